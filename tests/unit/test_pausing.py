"""The pausing consumer loop shared by the demand consumer and the writer, and the sink
metrics both count the same way (streams.pausing)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from prometheus_client import REGISTRY

from streams.backoff import Backoff
from streams.errors import SinkRejected, SinkUnavailable
from streams.pausing import PausingLoop
from streams.pipeline import DemandPipeline
from streams.writer import SinkWriter
from tests.helpers.engine import handle


class _Side:
    """A scripted side: ``results`` are the outcomes of successive flushes; a flush waits
    for ``gate``; every call is logged in ``calls``."""

    def __init__(self, results: list[bool], *, backlogged: bool = False,
                 due_from_poll: int = 1) -> None:
        self.results = results
        self.gate = asyncio.Event()
        self.gate.set()
        self.calls: list[str] = []
        self.is_backlogged = backlogged
        self.due_from_poll = due_from_poll
        self.polls = 0
        self.flushing = False
        self.polled_while_flushing = 0

    async def poll(self) -> int:
        self.polls += 1
        self.calls.append("poll")
        await asyncio.sleep(0)  # a fetch yields to the loop (a flush task starts)
        if self.flushing:
            self.polled_while_flushing += 1
        return 1

    def flush_due(self, caught_up: bool) -> bool:
        return bool(self.results) and self.polls >= self.due_from_poll

    def backlogged(self) -> bool:
        return self.is_backlogged

    async def flush(self) -> bool:
        self.calls.append("flush")
        self.flushing = True
        try:
            await self.gate.wait()
            return self.results.pop(0)
        finally:
            self.flushing = False


def _loop(side: _Side, *, background: bool) -> tuple[PausingLoop, list[str]]:
    events: list[str] = []
    stopping = asyncio.Event()
    loop = PausingLoop(side, lambda: events.append("pause"), lambda: events.append("resume"),
                       stopping, background=background, backoff=Backoff(0.001, 0.004))
    return loop, events


async def _run_until(loop: PausingLoop, done: Any, timeout_s: float = 5.0) -> None:
    task = asyncio.create_task(loop.run())
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not done():
        assert asyncio.get_running_loop().time() < deadline, "the loop did not get there"
        await asyncio.sleep(0.001)
    loop.stopping.set()
    await asyncio.wait_for(task, 5)


def test_a_failed_write_pauses_until_a_retry_succeeds_in_both_modes() -> None:
    for background in (True, False):
        async def scenario(background: bool = background) -> tuple[_Side, list[str], bool]:
            side = _Side([False, False, False, True])
            loop, events = _loop(side, background=background)
            paused_seen: list[bool] = []

            def done() -> bool:
                paused_seen.append(loop.paused)
                return not side.results

            await _run_until(loop, done)
            return side, events, any(paused_seen) and not loop.paused

        side, events, paused_then_resumed = asyncio.run(scenario())
        assert events == ["pause", "resume"], (background, events)
        assert paused_then_resumed
        assert side.calls.count("flush") == 4


def test_a_stop_request_ends_the_retries() -> None:
    async def scenario() -> tuple[_Side, list[str]]:
        side = _Side([False] * 1000)
        loop, events = _loop(side, background=True)
        loop.backoff = Backoff(30.0, 30.0)  # a stop must not wait this out
        await _run_until(loop, lambda: loop.paused, timeout_s=5)
        return side, events

    side, events = asyncio.run(asyncio.wait_for(scenario(), 10))
    assert events == ["pause"]
    assert side.calls.count("flush") == 1  # the stop ended the first backoff wait


def test_background_writes_poll_on_until_backlogged() -> None:
    async def scenario(backlogged: bool) -> _Side:
        side = _Side([True], backlogged=backlogged)
        side.gate.clear()
        loop, _ = _loop(side, background=True)
        task = asyncio.create_task(loop.run())
        while "flush" not in side.calls:
            await asyncio.sleep(0)
        for _ in range(50):
            await asyncio.sleep(0)
        side.gate.set()
        while side.results:
            await asyncio.sleep(0)
        loop.stopping.set()
        await task
        return side

    free = asyncio.run(scenario(backlogged=False))
    assert free.polled_while_flushing > 5  # batches kept coming while the write ran
    held = asyncio.run(scenario(backlogged=True))
    assert held.polled_while_flushing == 1  # the one poll after the cut, then it waited


def test_foreground_writes_never_poll_while_writing() -> None:
    async def scenario() -> _Side:
        side = _Side([True, False, True], backlogged=False)
        loop, _ = _loop(side, background=False)
        await _run_until(loop, lambda: not side.results)
        return side

    side = asyncio.run(scenario())
    assert side.polled_while_flushing == 0
    assert side.calls.count("flush") == 3


def _sample(name: str, labels: dict[str, str] | None = None) -> float:
    return REGISTRY.get_sample_value(name, labels or {}) or 0.0


def _counts() -> tuple[float, float, float]:
    return (_sample("c2m_sink_failures_total", {"operation": "write"}),
            _sample("c2m_sink_retries_total"), _sample("c2m_sink_healthy"))


class _Failing:
    """Its first ``fails`` writes raise SinkUnavailable."""

    name = "test"

    def __init__(self, fails: int) -> None:
        self.fails = fails

    def _attempt(self) -> None:
        if self.fails:
            self.fails -= 1
            raise SinkUnavailable("injected")


class _FailingSink(_Failing):
    defers_publish = False

    async def write(self, batch: Any, late: Any, lateness_ms: int) -> None:
        self._attempt()

    async def publish(self) -> None:
        return None


class _FailingStore(_Failing):
    """The writer's DemandStore (called on its ClickHouse thread)."""

    def write(self, batch: Any, late: Any, lateness_ms: int) -> None:
        self._attempt()


def test_the_worker_and_the_writer_count_failures_and_retries_alike(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Three failed writes, then one that succeeds: three failures, three retries, and
    healthy again, whether the pipeline (worker) or the writer wrote; each logs the first
    failure and the recovery once, in its own words and logger."""
    import orjson

    from streams.core.engine import DemandEngine, FlushBatch, Record

    async def no_dead_letters(key: bytes | None, value: bytes) -> Any:  # pragma: no cover
        raise AssertionError

    async def worker() -> list[bool]:
        pipeline = DemandPipeline(DemandEngine(), None, no_dead_letters,
                                  sink=_FailingSink(3))  # type: ignore[arg-type]
        view = orjson.dumps({"event_id": "e", "ts": 1_794_398_400_000, "shop_id": "s",
                             "event_type": "page_view", "sku": "A", "visitor_id": "v",
                             "region": "r"})
        try:
            await handle(pipeline, [Record("shop.pageviews", 0, 0, 1_794_398_400_000, None, view)])
            return [await pipeline.flush() for _ in range(4)]
        finally:
            pipeline.close()

    async def writer() -> list[bool]:
        w = SinkWriter("unused:9092", "g", _FailingStore(3),  # type: ignore[arg-type]
                       batch_max_messages=10, min_interval_s=1.0)
        w.pending.append((FlushBatch([], []), [], 0))
        try:
            return [await w.flush() for _ in range(4)]
        finally:
            w.close()

    caplog.set_level(logging.WARNING)
    for run in (worker, writer):
        before = _counts()
        assert asyncio.run(run()) == [False, False, False, True], run.__name__
        after = _counts()
        assert (after[0] - before[0], after[1] - before[1], after[2]) == (3, 3, 1), run.__name__
    assert [(r.name, r.getMessage()) for r in caplog.records] == [
        ("streams.pipeline", "test flush failed, will retry: injected"),
        ("streams.pipeline", "test sink is back; flushed the backlog"),
        ("streams.writer", "ClickHouse write failed, will retry: injected"),
        ("streams.writer", "ClickHouse is back; wrote the backlog"),
    ]


def test_the_demand_consumer_service_waits_for_the_catalog_and_hands_on_a_fatal_error() -> None:
    """DemandConsumer is a mode.Service: it consumes once ``start_after`` is set, and an
    error no retry can fix goes to ``on_fatal`` (the app stops) instead of crashing."""
    from streams.errors import C2MError, SinkRejected
    from streams.ingest import DemandConsumer

    async def scenario() -> tuple[list[str], list[str], list[C2MError]]:
        ready = asyncio.Event()
        fatal: list[C2MError] = []
        consumer = DemandConsumer("unused:9092", "g", None,  # type: ignore[arg-type]
                                  start_after=ready, on_fatal=fatal.append)
        ran: list[str] = []

        async def run() -> None:
            ran.append("run")
            raise SinkRejected("refused")

        consumer.run = run  # type: ignore[method-assign]
        await consumer.start()
        await asyncio.sleep(0.05)
        before = list(ran)
        ready.set()
        await asyncio.sleep(0.05)
        await asyncio.wait_for(consumer.stop(), 5)
        return before, ran, fatal

    before, ran, fatal = asyncio.run(scenario())
    assert before == [] and ran == ["run"]
    assert [type(e).__name__ for e in fatal] == ["SinkRejected"]


class _Refusing:
    """Every write is refused (a schema error): no retry can help."""

    name = "test"
    defers_publish = False

    def write(self, batch: Any, late: Any, lateness_ms: int) -> None:
        raise SinkRejected("refused: NO_SUCH_COLUMN_IN_TABLE")


class _RefusingSink(_Refusing):
    async def write(self, batch: Any, late: Any, lateness_ms: int) -> None:  # type: ignore[override]
        super().write(batch, late, lateness_ms)

    async def publish(self) -> None:  # pragma: no cover
        raise AssertionError


def test_a_refused_write_stops_the_worker_and_the_writer_alike(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A write ClickHouse refuses is raised at once by the pipeline (worker) and by the
    writer, not retried: one failure counted, no retry, unhealthy, no "will retry" line,
    and the writer keeps its messages uncommitted (the writer looped on it before)."""
    import orjson

    from streams.core.engine import DemandEngine, FlushBatch, Record

    async def no_dead_letters(key: bytes | None, value: bytes) -> Any:  # pragma: no cover
        raise AssertionError

    async def worker() -> int:
        pipeline = DemandPipeline(DemandEngine(), None, no_dead_letters,
                                  sink=_RefusingSink())  # type: ignore[arg-type]
        view = orjson.dumps({"event_id": "e", "ts": 1_794_398_400_000, "shop_id": "s",
                             "event_type": "page_view", "sku": "A", "visitor_id": "v",
                             "region": "r"})
        try:
            await handle(pipeline, [Record("shop.pageviews", 0, 0, 1_794_398_400_000, None, view)])
            with pytest.raises(SinkRejected):
                await pipeline.flush()
            return 1
        finally:
            pipeline.close()

    async def writer() -> int:
        w = SinkWriter("unused:9092", "g", _Refusing(),  # type: ignore[arg-type]
                       batch_max_messages=10, min_interval_s=1.0)
        w.pending.append((FlushBatch([], []), [], 0))
        try:
            with pytest.raises(SinkRejected):
                await w.flush()
            return len(w.pending)
        finally:
            w.close()

    caplog.set_level(logging.WARNING)
    for run in (worker, writer):
        before = _counts()
        assert asyncio.run(run()) == 1, run.__name__
        after = _counts()
        assert (after[0] - before[0], after[1] - before[1], after[2]) == (1, 0, 0), run.__name__
    assert not [r for r in caplog.records if "will retry" in r.getMessage()]


def test_the_writer_service_hands_a_refused_write_to_on_fatal() -> None:
    """SinkWriter is a mode.Service like the demand consumer: an error no retry can fix
    ends its task and goes to ``on_fatal`` (the writer app stops with its exit code)."""
    from streams.errors import C2MError

    async def scenario() -> list[C2MError]:
        fatal: list[C2MError] = []
        w = SinkWriter("unused:9092", "g", _Refusing(),  # type: ignore[arg-type]
                       batch_max_messages=10, min_interval_s=1.0, on_fatal=fatal.append)

        async def run() -> None:
            raise SinkRejected("refused")

        w.run = run  # type: ignore[method-assign]
        await w.start()
        await asyncio.sleep(0.05)
        await asyncio.wait_for(w.stop(), 5)
        w.close()
        return fatal

    assert [type(e).__name__ for e in asyncio.run(scenario())] == ["SinkRejected"]
