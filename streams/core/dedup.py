"""Bounded duplicate detection by ``event_id`` within an event-time horizon.

Ids are kept as 64-bit BLAKE2b hashes (collision odds for 10^8 live ids ~ 3e-4 over the
whole horizon), bucketed by the hour of their event ts. When the partition's watermark
passes a bucket's end plus the horizon, the whole bucket is forgotten in O(bucket).
Producers retry with the same id and the same key, so a retry lands in the same
partition: dedup state is per source partition.

New ids since the last flush are kept in ``pending`` so the store can persist them with
the flush; a restarted worker reloads them and keeps deduplicating across the restart.
"""

from __future__ import annotations

from collections.abc import Iterable
from hashlib import blake2b

BUCKET_MS = 3_600_000


def id_hash(event_id: str) -> int:
    """Stable 64-bit hash of an event id (same value in every process)."""
    return int.from_bytes(blake2b(event_id.encode(), digest_size=8).digest(), "little")


class Deduplicator:
    __slots__ = ("_buckets", "_seen", "horizon_ms", "pending")

    def __init__(self, horizon_ms: int) -> None:
        self.horizon_ms = horizon_ms
        self._seen: set[int] = set()
        self._buckets: dict[int, list[int]] = {}
        #: (hour bucket, id hash) first seen since the last flush
        self.pending: list[tuple[int, int]] = []

    def __len__(self) -> int:
        return len(self._seen)

    def first_time(self, event_id: str, ts_ms: int) -> bool:
        """True the first time ``event_id`` is offered; False for a duplicate."""
        h = int.from_bytes(blake2b(event_id.encode(), digest_size=8).digest(), "little")
        seen = self._seen
        if h in seen:
            return False
        seen.add(h)
        bucket = ts_ms // BUCKET_MS
        ids = self._buckets.get(bucket)
        if ids is None:
            self._buckets[bucket] = [h]
        else:
            ids.append(h)
        self.pending.append((bucket, h))
        return True

    def _add(self, bucket: int, h: int) -> None:
        self._seen.add(h)
        ids = self._buckets.get(bucket)
        if ids is None:
            self._buckets[bucket] = [h]
        else:
            ids.append(h)

    def load(self, pairs: Iterable[tuple[int, int]]) -> None:
        """Restore (hour bucket, id hash) pairs persisted by earlier flushes."""
        for bucket, h in pairs:
            if h not in self._seen:
                self._add(bucket, h)

    def persisted(self, count: int) -> None:
        """The first ``count`` pending ids were written by a flush."""
        del self.pending[:count]

    def expire(self, watermark_ms: int) -> int:
        """Forget ids whose hour bucket ended more than the horizon before the watermark."""
        limit = (watermark_ms - self.horizon_ms) // BUCKET_MS
        old = [b for b in self._buckets if b < limit]
        dropped = 0
        for b in old:
            ids = self._buckets.pop(b)
            self._seen.difference_update(ids)
            dropped += len(ids)
        return dropped

    def oldest_bucket_kept(self, watermark_ms: int) -> int:
        """Smallest hour bucket a restore needs for this watermark."""
        return (watermark_ms - self.horizon_ms) // BUCKET_MS
