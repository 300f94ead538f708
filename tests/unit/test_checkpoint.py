"""streams.checkpoint: a cut takes everything pending; a cut not written is pending again,
before what came since; committing waits for the cut's dead letters, then commits the
positions of its checkpoint rows, and nothing without them."""

from __future__ import annotations

import asyncio
from typing import Any

from streams.checkpoint import Pending
from streams.core.engine import Checkpoint, FlushBatch


def _row(topic: str, partition: int, position: int) -> Checkpoint:
    return Checkpoint(topic, partition, position, None, position, position, 0, 0, 0)


def test_a_cut_takes_everything_and_a_failed_one_comes_back_first() -> None:
    pending = Pending()
    pending.late.append("late-1")  # type: ignore[arg-type]
    pending.record_ts.append(10)
    pending.events = 5
    cut = pending.cut(FlushBatch([], []))
    assert (cut.late, cut.record_ts, cut.events) == (["late-1"], [10], 5)
    assert (pending.late, pending.record_ts, pending.events) == ([], [], 0)
    pending.late.append("late-2")  # type: ignore[arg-type]
    pending.record_ts.append(20)
    pending.events = 3
    pending.hand_back(cut)  # the write failed
    assert (pending.late, pending.record_ts, pending.events) == (["late-1", "late-2"],
                                                                   [10, 20], 8)


def test_commit_waits_for_the_dead_letters_then_commits_the_positions() -> None:
    async def scenario() -> list[Any]:
        seen: list[Any] = []
        delivered = asyncio.get_running_loop().create_future()

        async def committer(positions: dict[tuple[str, int], int]) -> None:
            seen.append(("commit", delivered.done(), positions))

        pending = Pending()
        pending.deliveries.append(delivered)
        batch = FlushBatch([], [_row("shop.orders", 0, 7), _row("shop.pageviews", 3, 2)])
        cut = pending.cut(batch)
        committing = asyncio.create_task(cut.commit(committer))
        await asyncio.sleep(0.01)
        seen.append(("before delivery", committing.done()))
        delivered.set_result(None)
        await committing
        empty = Pending().cut(FlushBatch([], []))
        await empty.commit(committer)  # no checkpoint rows: nothing to commit
        return seen

    assert asyncio.run(scenario()) == [
        ("before delivery", False),
        ("commit", True, {("shop.orders", 0): 7, ("shop.pageviews", 3): 2}),
    ]
