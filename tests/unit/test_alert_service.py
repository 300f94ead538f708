"""The alert service as a mode.Service: the app's timer calls catch_up, which evaluates
chunk after chunk while the service runs; stopping it waits for the hour in progress."""

from __future__ import annotations

import asyncio
from typing import Any

from streams.alerting import AlertService


def _service(results: list[int], gate: asyncio.Event, hold_at: int) -> tuple[AlertService,
                                                                             list[int]]:
    svc = AlertService(None, None, None, max_hours_per_tick=2)  # type: ignore[arg-type]
    calls: list[int] = []

    async def tick() -> int:
        calls.append(len(calls))
        if len(calls) == hold_at:
            await gate.wait()  # an hour being published and stored
        return results[len(calls) - 1]

    svc.tick = tick  # type: ignore[method-assign]
    return svc, calls


def test_catch_up_runs_full_chunks_back_to_back_and_only_while_running() -> None:
    async def scenario() -> tuple[list[int], list[int]]:
        gate = asyncio.Event()
        gate.set()
        svc, calls = _service([2, 2, 1, 2], gate, hold_at=0)
        await svc.catch_up()  # not started: nothing
        before = list(calls)
        await svc.start()
        await svc.catch_up()  # 2 (full), 2 (full), 1: caught up
        await svc.stop()
        return before, calls

    before, calls = asyncio.run(scenario())
    assert before == [] and calls == [0, 1, 2]


def test_stopping_waits_for_the_evaluation_in_progress_and_ends_catch_up() -> None:
    async def scenario() -> dict[str, Any]:
        gate = asyncio.Event()
        svc, calls = _service([2, 2, 2, 2], gate, hold_at=2)
        await svc.start()
        catching_up = asyncio.create_task(svc.catch_up())
        while len(calls) < 2:
            await asyncio.sleep(0.001)
        stopping = asyncio.create_task(svc.stop())
        await asyncio.sleep(0.05)
        waited = not stopping.done()  # the hour in progress holds the stop
        gate.set()
        await asyncio.wait_for(stopping, 5)
        await asyncio.wait_for(catching_up, 5)
        return {"waited": waited, "calls": calls, "running": svc.running}

    out = asyncio.run(scenario())
    assert out["waited"] is True
    assert out["calls"] == [0, 1]  # a full chunk, but stopping: no third tick
    assert out["running"] is False


def test_the_first_evaluation_comes_at_start_once_ready_not_a_timer_interval_later() -> None:
    async def scenario() -> tuple[list[int], list[int]]:
        gate = asyncio.Event()
        gate.set()
        ready = asyncio.Event()
        svc, calls = _service([1, 1], gate, hold_at=0)
        svc.ready, svc.evaluate_at_start = ready, True
        await svc.start()
        await asyncio.sleep(0.05)
        before = list(calls)  # started, the catalog not read yet: nothing
        await svc.catch_up()  # what the app's timer calls: nothing before ready either
        ready.set()
        for _ in range(100):
            if calls:
                break
            await asyncio.sleep(0.01)
        await svc.stop()
        return before, calls

    before, calls = asyncio.run(scenario())
    assert before == [] and calls == [0]


def test_resolved_alerts_are_pruned_at_most_once_a_day_behind_the_retention() -> None:
    """``_prune_resolved`` (after every evaluation): the bound is the last evaluated hour's
    end less the retention, floored to a whole day, and the store is asked again only
    when that bound moved; without a retention, or before any hour, never."""
    day, hour = 86_400, 3600
    asked: list[int] = []

    class Store:
        def prune_resolved(self, before_s: int) -> int:
            asked.append(before_s)
            return 1

    async def io(fn: Any, *args: Any) -> Any:
        return fn(*args)

    async def scenario(keep: int | None) -> list[int]:
        asked.clear()
        svc = AlertService(Store(), None, io, resolved_keep_s=keep)  # type: ignore[arg-type]
        await svc._prune_resolved()  # nothing evaluated yet
        t0 = 20 * day
        for h in range(0, 3 * 24):  # three days of hours, 10:00 on
            svc.last_hour = t0 + 10 * hour + h * hour
            await svc._prune_resolved()
        return list(asked)

    got = asyncio.run(scenario(7 * day))
    # the first hour ends at 20d 11:00 -> bound 13d 11:00, floored to 13d; then one more
    # day with the first hour of each new day (21d, 22d, 23d 00:00); the last hour ends at
    # 23d 10:00
    assert got == [13 * day, 14 * day, 15 * day, 16 * day]
    assert asyncio.run(scenario(None)) == []
