"""The demand agent (``streams.app.attach_demand_agent``): record batches reach the
pipeline through a Faust agent over an in-memory channel, in order, one at a time, and
whatever applying a batch raises comes back to the consumer that handed it over."""

from __future__ import annotations

import asyncio
from typing import Any

import faust
import pytest

from streams.app import attach_demand_agent


class _Pipeline:
    def __init__(self) -> None:
        self.applied: list[tuple[Any, int | None, asyncio.Task[Any] | None]] = []

    async def handle_runs(self, runs: Any, oldest_ts_ms: int | None = None) -> None:
        if runs == "boom":
            raise ValueError("a batch that cannot be applied")
        await asyncio.sleep(0)  # the consumer waits: nothing is applied concurrently
        self.applied.append((runs, oldest_ts_ms, asyncio.current_task()))


def test_batches_are_applied_by_the_agent_in_order_and_errors_come_back() -> None:
    async def scenario() -> None:
        app = faust.App("c2m-test-agent", broker="kafka://127.0.0.1:9", store="memory://")
        pipeline = _Pipeline()
        apply = attach_demand_agent(app, pipeline)  # type: ignore[arg-type]
        assert "c2m.demand" in app.agents
        await app.agents.start()
        try:
            for i in range(5):
                await apply([("shop.orders", 0, [i])], 1000 + i)
            with pytest.raises(ValueError, match="cannot be applied"):
                await apply("boom", None)  # type: ignore[arg-type]
            await apply([("shop.orders", 0, [5])], None)  # the agent survived it
        finally:
            await app.agents.stop()
        assert [(r[0][2][0], ts) for r, ts, _ in pipeline.applied] == [
            (0, 1000), (1, 1001), (2, 1002), (3, 1003), (4, 1004), (5, None)]
        tasks = {t for _, _, t in pipeline.applied}
        assert len(tasks) == 1 and asyncio.current_task() not in tasks  # the agent's actor

    asyncio.run(scenario())
