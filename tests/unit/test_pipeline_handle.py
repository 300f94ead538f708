"""DemandPipeline.handle skips re-delivered records, whatever the interleaving of partitions."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson

from streams.core.engine import DemandEngine, Record
from streams.pipeline import DemandPipeline
from tests.helpers.engine import handle

T0 = 1_794_398_400_000


def _view(p: int, offset: int) -> Record:
    value = orjson.dumps({"event_id": f"{p}-{offset}", "ts": T0 + offset, "shop_id": "s",
                          "event_type": "page_view", "sku": "A", "visitor_id": "v",
                          "region": "浙江"})
    return Record("shop.pageviews", p, offset, T0 + 10_000, None, value)


async def _no_dead_letters(key: bytes | None, value: bytes) -> Any:  # pragma: no cover
    raise AssertionError("no dead letters expected")


class _NoSink:
    """handle() never writes; a flush would fail loudly."""

    name = "none"


def test_redelivered_records_are_skipped() -> None:
    engine = DemandEngine()
    pipeline = DemandPipeline(engine, None, _no_dead_letters, sink=_NoSink())  # type: ignore[arg-type]
    try:
        asyncio.run(handle(pipeline, [_view(p, o) for o in range(5) for p in (0, 1)]))
        # a re-delivery overlapping the first batch, partitions interleaved and in runs
        again = [_view(0, o) for o in range(3, 8)] + [_view(1, o) for o in range(0, 6)]
        asyncio.run(handle(pipeline, [again[i] for i in (0, 5, 1, 6, 2, 7, 3, 8, 4, 9, 10)]))
        asyncio.run(handle(pipeline, [_view(1, 6), _view(1, 7)]))
        # the first run is new, a later partition's run starts with a re-delivery
        asyncio.run(handle(pipeline, [_view(0, 8), _view(0, 9), _view(1, 7), _view(1, 8)]))
    finally:
        pipeline.close()
    for p, n in ((0, 10), (1, 9)):
        st = engine.states[("shop.pageviews", p)]
        assert st.position == n
        assert st.ledger.consumed == st.ledger.processed == n
        assert st.ledger.duplicates == 0


class _GatedSink:
    """A sink whose writes wait for ``gate``; ``fail`` makes them raise SinkUnavailable."""

    name = "gated"
    defers_publish = False

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.fail = False
        self.written: list[Any] = []

    async def write(self, batch: Any, late: Any, lateness_ms: int) -> None:
        await self.gate.wait()
        if self.fail:
            from streams.errors import SinkUnavailable

            raise SinkUnavailable("injected")
        self.written.append(batch)

    async def publish(self) -> None:
        return None


def test_batches_are_applied_while_a_flush_is_written_and_a_failed_write_is_handed_back() -> None:
    async def scenario() -> tuple[_GatedSink, DemandEngine]:
        engine, sink = DemandEngine(), _GatedSink()
        pipeline = DemandPipeline(engine, None, _no_dead_letters, sink=sink)  # type: ignore[arg-type]
        committed: list[dict[Any, int]] = []

        async def commit(positions: dict[Any, int]) -> None:
            committed.append(positions)

        pipeline.use_committer(commit)
        await handle(pipeline, [_view(0, o) for o in range(5)])
        sink.fail = True
        flushing = asyncio.create_task(pipeline.flush())
        await asyncio.sleep(0)
        assert pipeline.pending_events == 0 and pipeline.unflushed_events == 5  # in flight
        # not blocked by the write in flight
        await asyncio.wait_for(handle(pipeline, [_view(0, o) for o in range(5, 8)]), 1)
        assert pipeline.unflushed_events == 8
        sink.gate.set()
        assert await flushing is False and not committed  # failed: nothing committed
        assert pipeline.pending_events == 8
        sink.fail = False
        assert await pipeline.flush() is True
        assert committed == [{("shop.pageviews", 0): 8}]
        assert pipeline.unflushed_events == 0
        pipeline.close()
        return sink, engine

    sink, _ = asyncio.run(scenario())
    [batch] = sink.written  # the retry wrote everything: the handed-back cut and the rest
    assert [(c.position, c.consumed) for c in batch.checkpoints] == [(8, 8)]
    assert sum(len(r[3]) for r in batch.dedup_rows) == 8
    assert {r[-2] for r in batch.rows if r[2] == 300} == {8}  # 8 page views in one cell


def test_release_does_not_wait_for_a_hung_flush() -> None:
    async def scenario() -> DemandEngine:
        engine, sink = DemandEngine(), _GatedSink()  # the gate never opens
        pipeline = DemandPipeline(engine, None, _no_dead_letters, sink=sink)  # type: ignore[arg-type]
        await handle(pipeline, [_view(0, o) for o in range(3)] + [_view(1, 0)])
        flushing = asyncio.create_task(pipeline.flush())
        await asyncio.sleep(0)
        await asyncio.wait_for(pipeline.release([("shop.pageviews", 0)], timeout_s=0.2), 2)
        flushing.cancel()
        pipeline.close()
        return engine

    engine = asyncio.run(scenario())
    assert set(engine.states) == {("shop.pageviews", 1)}


def test_runs_as_getmany_gives_them_skip_what_was_applied() -> None:
    """handle_runs (the consumer's path): a run wholly re-delivered is dropped, a run
    straddling the position keeps its tail, a new partition's run is applied whole."""
    engine = DemandEngine()
    pipeline = DemandPipeline(engine, None, _no_dead_letters, sink=_NoSink())  # type: ignore[arg-type]
    v = "shop.pageviews"
    try:
        asyncio.run(pipeline.handle_runs([(v, 0, [_view(0, o) for o in range(4)]),
                                          (v, 1, [_view(1, o) for o in range(2)])]))
        asyncio.run(pipeline.handle_runs([
            (v, 0, [_view(0, o) for o in range(1, 3)]),  # all applied already
            (v, 1, [_view(1, o) for o in range(0, 5)]),  # 0-1 applied, 2-4 new
            (v, 2, [_view(2, o) for o in range(3)]),  # a partition seen for the first time
        ]))
    finally:
        pipeline.close()
    for p, n in ((0, 4), (1, 5), (2, 3)):
        st = engine.states[(v, p)]
        assert st.position == n
        assert st.ledger.consumed == st.ledger.processed == n
        assert st.ledger.duplicates == 0


def test_a_cut_is_due_at_the_eager_count_or_the_back_pressure_bound_or_the_interval() -> None:
    """Under load the next cut does not wait for the interval: it is due once
    ``eager_events`` (or ``max_pending_events``, if smaller) are pending; a caught-up
    consumer cuts once ``caught_up_events`` are pending and a quarter interval has passed."""

    def due_after(n: int, eager: int, bound: int, interval_s: float = 3600.0,
                  caught_up: bool = False, caught_up_events: int = 1_000,
                  since_s: float = 0.0) -> bool:
        pipeline = DemandPipeline(
            DemandEngine(), None, _no_dead_letters, sink=_NoSink(),  # type: ignore[arg-type]
            flush_interval_s=interval_s, max_pending_events=bound, eager_events=eager,
            caught_up_events=caught_up_events,
        )
        pipeline._last_flush -= since_s  # as if the last cut was ``since_s`` ago
        try:
            if n:
                asyncio.run(handle(pipeline, [_view(0, o) for o in range(n)]))
            return pipeline.flush_due(caught_up=caught_up)
        finally:
            pipeline.close()

    # caught up: the event floor and a quarter of the interval, both needed
    assert due_after(3, eager=50, bound=100, interval_s=4, caught_up=True, caught_up_events=3,
                     since_s=1.5)
    assert not due_after(3, eager=50, bound=100, interval_s=4, caught_up=False,
                         caught_up_events=3, since_s=1.5)
    assert not due_after(2, eager=50, bound=100, interval_s=4, caught_up=True,
                         caught_up_events=3, since_s=1.5)
    assert not due_after(3, eager=50, bound=100, interval_s=4, caught_up=True,
                         caught_up_events=3, since_s=0.5)

    assert not due_after(4, eager=5, bound=100)
    assert due_after(5, eager=5, bound=100)
    assert not due_after(2, eager=50, bound=3)
    assert due_after(3, eager=50, bound=3)
    assert due_after(1, eager=50, bound=100, interval_s=1e-9)  # the interval has passed
    assert not due_after(0, eager=50, bound=100, interval_s=1e-9)  # but nothing is pending


def test_catalog_records_go_through_the_pipeline_under_its_state_lock() -> None:
    """The catalog reader applies products through DemandPipeline.apply_product: it waits
    while a batch holds the state lock, and a rejected record is dead-lettered."""

    async def scenario() -> tuple[bool, int, bool, int]:
        sent: list[bytes] = []

        async def send(key: bytes | None, value: bytes) -> Any:
            done = asyncio.get_running_loop().create_future()
            done.set_result(None)
            sent.append(value)
            return done

        pipeline = DemandPipeline(DemandEngine(), None, send, sink=_NoSink())  # type: ignore[arg-type]
        product = orjson.dumps({
            "event_id": "p1", "ts": T0, "shop_id": "s", "event_type": "product_upsert",
            "sku": "A", "factory_id": "F1", "category": "袜子", "color": "蓝", "size": "M",
            "list_price": 9.5, "lead_time_days": 7, "moq": 100})
        async with pipeline._lock:  # as while a batch is applied or a flush is cut
            applying = asyncio.create_task(
                pipeline.apply_product(Record("shop.products", 0, 0, T0, b"A", product)))
            await asyncio.sleep(0.01)
            waited = not applying.done() and pipeline.catalog_size == 0
        assert await applying is True
        keyless_tombstone = Record("shop.products", 0, 1, T0, None, None)
        applied = await pipeline.apply_product(keyless_tombstone)
        pipeline.close()
        return waited, pipeline.catalog_size, applied, len(sent)

    assert asyncio.run(scenario()) == (True, 1, False, 1)


class _DeferringSink:
    """A sink that leaves checkpoints to ``publish`` (as the ClickHouse sink does): writes
    wait for ``gate``; ``calls`` records writes (their checkpoint positions) and publishes;
    ``fail_publish`` makes the next publish raise SinkUnavailable."""

    name = "deferring"
    defers_publish = True

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.calls: list[Any] = []
        self.fail_publish = False

    async def write(self, batch: Any, late: Any, lateness_ms: int) -> None:
        await self.gate.wait()
        self.calls.append(("write", [c.position for c in batch.checkpoints]))

    async def publish(self) -> None:
        if self.fail_publish:
            from streams.errors import SinkUnavailable

            self.fail_publish = False
            raise SinkUnavailable("injected")
        self.calls.append("publish")


def test_a_cut_written_while_the_next_is_due_is_published_and_committed_with_it() -> None:
    """Under a backlog (the next cut due by its size when a write returns) a written cut
    is held: not published, not committed, still counted as uncommitted. The next flush
    publishes both at once and commits them in order; a publish that fails keeps them
    held; a flush without ``hold_ok`` (stop, revoke) and ``publish_max_lag_s`` = 0 never
    hold."""

    async def scenario() -> None:
        sink = _DeferringSink()
        pipeline = DemandPipeline(DemandEngine(), None, _no_dead_letters, sink=sink,  # type: ignore[arg-type]
                                  eager_events=3, publish_max_lag_s=60)
        committed: list[dict[Any, int]] = []

        async def commit(positions: dict[Any, int]) -> None:
            committed.append(positions)

        pipeline.use_committer(commit)
        await handle(pipeline, [_view(0, o) for o in range(4)])
        flushing = asyncio.create_task(pipeline.flush(hold_ok=True))
        await asyncio.sleep(0)
        await handle(pipeline, [_view(0, o) for o in range(4, 7)])  # the next cut is due
        sink.gate.set()
        assert await flushing is True
        assert sink.calls == [("write", [4])] and not committed  # held
        assert pipeline.uncommitted_events == 7 and pipeline.unflushed_events == 3
        assert pipeline.flush_due()  # held cuts are due at once
        # the next write (nothing more arrived): published with the held one, two commits
        sink.fail_publish = True
        assert await pipeline.flush(hold_ok=True) is False  # the publish failed
        assert not committed and pipeline.uncommitted_events == 7
        assert await pipeline.flush(hold_ok=True) is True
        assert sink.calls == [("write", [4]), ("write", [7]), ("write", [7]), "publish"]
        assert committed == [{("shop.pageviews", 0): 4}, {("shop.pageviews", 0): 7}]
        assert pipeline.uncommitted_events == 0 and not pipeline.flush_due()
        # without hold_ok, or with no lag allowed, a due next cut does not hold a write
        for at, hold_ok, lag in ((7, False, 60.0), (14, True, 0.0)):
            pipeline.publish_max_lag_s = lag
            sink.gate.clear()
            await handle(pipeline, [_view(0, o) for o in range(at, at + 4)])
            flushing = asyncio.create_task(pipeline.flush(hold_ok=hold_ok))
            await asyncio.sleep(0)
            await handle(pipeline, [_view(0, o) for o in range(at + 4, at + 7)])
            sink.gate.set()
            assert await flushing is True
            assert sink.calls[-1] == "publish"
            assert committed[-1] == {("shop.pageviews", 0): at + 4}
            assert await pipeline.flush() is True
            assert committed[-1] == {("shop.pageviews", 0): at + 7}
        pipeline.close()

    asyncio.run(scenario())
