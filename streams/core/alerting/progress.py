"""When is an event-time hour finished for the alert rules?

The rules must see every event of an hour, or a replay with other batching could give
other alerts. The demand views' idle rule (``c2m.event_time_progress``) drops a partition
that is behind in *event* time, which is right for a quiet partition but wrong for one
that is merely slower to be read, as in a replay. For alerts a source partition counts
unless it is *idle*: behind the newest partition by more than ``idle_ms`` of event time
**and** without a new checkpoint for ``idle_wall_s`` seconds of wall time (a partition
being read writes a checkpoint at every flush). A partition without any checkpoint
blocks the alerts until the worker has run for ``idle_wall_s`` (it may simply not have
been flushed yet); after that it is taken to be empty.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class PartitionProgress:
    watermark_ms: int  # -1 if none
    max_ts: int  # -1 if none
    seconds_since_write: float


def alert_watermark(
    progress: dict[tuple[str, int], PartitionProgress],
    expected: set[tuple[str, int]],
    *,
    idle_ms: int,
    idle_wall_s: float,
    uptime_s: float,
) -> int | None:
    """The event time up to which every counted partition is complete, or None."""
    newest = max((p.max_ts for p in progress.values()), default=-1)
    if newest < 0 or (not expected and uptime_s < idle_wall_s):
        return None  # nothing yet, or the partitions are not known yet
    marks: list[int] = []
    for tp in sorted(expected | set(progress)):
        p = progress.get(tp)
        if p is None or p.watermark_ms < 0:
            if uptime_s < idle_wall_s:
                return None
            continue
        if p.max_ts < newest - idle_ms and p.seconds_since_write > idle_wall_s:
            continue
        marks.append(p.watermark_ms)
    return min(marks) if marks else None
