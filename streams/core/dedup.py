"""Bounded duplicate detection by ``event_id`` within an event-time horizon.

Ids are bucketed by the hour of their event ts; when the partition's watermark moves
past a bucket's end plus the horizon, the whole bucket is forgotten in O(bucket).
Producers retry with the same id and the same key, so a retry lands in the same
partition: dedup state is per source partition.
"""

from __future__ import annotations

_BUCKET_MS = 3_600_000


class Deduplicator:
    __slots__ = ("_buckets", "_seen", "horizon_ms")

    def __init__(self, horizon_ms: int) -> None:
        self.horizon_ms = horizon_ms
        self._seen: set[str] = set()
        self._buckets: dict[int, list[str]] = {}

    def __len__(self) -> int:
        return len(self._seen)

    def first_time(self, event_id: str, ts_ms: int) -> bool:
        """True the first time ``event_id`` is offered; False for a duplicate."""
        if event_id in self._seen:
            return False
        self._seen.add(event_id)
        bucket = ts_ms // _BUCKET_MS
        ids = self._buckets.get(bucket)
        if ids is None:
            self._buckets[bucket] = [event_id]
        else:
            ids.append(event_id)
        return True

    def expire(self, watermark_ms: int) -> int:
        """Forget ids whose hour bucket ended more than the horizon before the watermark."""
        limit = (watermark_ms - self.horizon_ms) // _BUCKET_MS
        old = [b for b in self._buckets if b < limit]
        dropped = 0
        for b in old:
            ids = self._buckets.pop(b)
            self._seen.difference_update(ids)
            dropped += len(ids)
        return dropped
