"""One flush, from its cut to the Kafka commit: "write it, then commit these offsets".

``Pending`` gathers what the pipeline takes in between two cuts besides the engine's own
marks: late events, the delivery of every dead letter sent, the Kafka timestamp of each
batch's oldest record (end-to-end latency) and the number of events. ``Pending.cut``
makes a ``Cut`` of it and the engine's flush batch; once the sink has written the cut,
``Cut.commit`` waits until its dead letters are delivered and only then commits its
positions (the position of every partition in the batch's checkpoint rows,
``streams.core.engine.Checkpoint``) with the committer it is given; a write that failed,
or was abandoned, gives the cut back (``Pending.hand_back``) so the next cut includes
it.
``streams.pipeline.DemandPipeline`` drives it (under its state lock for the cut and the
hand-back). Framework-free: the sink and the committer are the caller's.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from streams.core.engine import FlushBatch, LateEvent

TP = tuple[str, int]
#: Commits {(topic, partition): next offset} to Kafka.
Committer = Callable[[dict[TP, int]], Awaitable[None]]


@dataclass(slots=True)
class Cut:
    """One flush cut: what to write, then which offsets to commit."""

    batch: FlushBatch
    late: list[LateEvent]
    deliveries: list[Awaitable[Any]]
    #: Kafka timestamp (ms) of the oldest record of each batch the cut covers
    record_ts: list[int]
    events: int

    @property
    def empty(self) -> bool:
        """Nothing to write (there may still be deliveries to wait for)."""
        return not self.batch and not self.late

    @property
    def positions(self) -> dict[TP, int]:
        """The offsets to commit: each partition's position at the cut."""
        return {(c.topic, c.partition): c.position for c in self.batch.checkpoints}

    async def commit(self, committer: Committer | None) -> None:
        """After the sink wrote this cut: wait for its dead letters, then commit."""
        for d in self.deliveries:
            await d
        if self.batch.checkpoints and committer is not None:
            await committer(self.positions)


@dataclass(slots=True)
class Pending:
    """What the pipeline took in since the last cut, besides the engine's marks."""

    late: list[LateEvent] = field(default_factory=list)
    deliveries: list[Awaitable[Any]] = field(default_factory=list)
    record_ts: list[int] = field(default_factory=list)
    events: int = 0

    def cut(self, batch: FlushBatch) -> Cut:
        """Everything pending, with the engine's flush ``batch``; pending is empty after."""
        cp = Cut(batch, self.late, self.deliveries, self.record_ts, self.events)
        self.late, self.deliveries, self.record_ts, self.events = [], [], [], 0
        return cp

    def hand_back(self, cp: Cut) -> None:
        """``cp`` was not written: it is pending again, before what came since."""
        self.late[:0] = cp.late
        self.deliveries[:0] = cp.deliveries
        self.record_ts[:0] = cp.record_ts
        self.events += cp.events
