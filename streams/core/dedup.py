"""Bounded duplicate detection by ``event_id`` within an event-time horizon.

Ids are kept as 64-bit BLAKE2b hashes (collision odds for 10^8 live ids ~ 3e-4 over the
whole horizon), bucketed by the hour of their event ts. When the partition's watermark
passes a bucket's end plus the horizon, the whole bucket is forgotten in O(bucket).
Producers retry with the same id and the same key, so a retry lands in the same
partition: dedup state is per source partition.

The ids of a bucket are kept in arrival order, so the ids new since the last flush cut
are a tail of each bucket: ``cut()`` takes those tails (and moves the marks), ``uncut()``
gives them back when the write failed. The store persists them with the flush; a restarted
worker reloads them and keeps deduplicating across the restart.

Two implementations with the same methods: ``Deduplicator`` here, the reference
(plain Python sets and lists, 78 bytes per id), and ``streams.core._lanes.IdSet``, the
compiled core's own (the hashes in C arrays, about a third of that; the compiled lanes add
ids to it without a Python object per id). The engine uses the compiled one when its
compiled lanes are on; tests/unit/test_core.py runs the same operations on both.
"""

from __future__ import annotations

from collections.abc import Iterable
from hashlib import blake2b

BUCKET_MS = 3_600_000


#: an empty 8-byte BLAKE2b state: copying it is ~30% cheaper than building one from
#: keyword arguments per id (the hot path hashes every event id)
_EMPTY = blake2b(digest_size=8)


def id_hash(event_id: str) -> int:
    """Stable 64-bit hash of an event id (same value in every process and release: the
    ids are persisted): BLAKE2b with an 8-byte digest of the UTF-8 id, little-endian."""
    h = _EMPTY.copy()
    h.update(event_id.encode())
    return int.from_bytes(h.digest(), "little")


#: (hour bucket, new ids of the bucket) taken by a cut, and the marks before it
Cut = tuple[list[tuple[int, list[int]]], dict[int, int]]



class Deduplicator:
    __slots__ = ("_buckets", "_cut", "_seen", "bucket_ms", "horizon_ms")

    def __init__(self, horizon_ms: int, bucket_ms: int = BUCKET_MS) -> None:
        self.horizon_ms = horizon_ms
        self.bucket_ms = bucket_ms
        self._seen: set[int] = set()
        #: hour bucket -> id hashes, in arrival order
        self._buckets: dict[int, list[int]] = {}
        #: hour bucket -> how many of its ids a flush cut has taken (or a restore loaded)
        self._cut: dict[int, int] = {}

    def __len__(self) -> int:
        return len(self._seen)

    def first_time(self, event_id: str, ts_ms: int) -> bool:
        """True the first time ``event_id`` is offered; False for a duplicate."""
        b = _EMPTY.copy()  # id_hash, inlined
        b.update(event_id.encode())
        h = int.from_bytes(b.digest(), "little")
        seen = self._seen
        if h in seen:
            return False
        seen.add(h)
        bucket = ts_ms // self.bucket_ms
        ids = self._buckets.get(bucket)
        if ids is None:
            self._buckets[bucket] = [h]
        else:
            ids.append(h)
        return True

    def snapshot(self) -> dict[int, tuple[list[int], int]]:
        """{hour bucket: (its ids in arrival order, its cut mark)}, buckets in order: the
        whole state (the id set is their union), comparable between implementations."""
        return {b: (list(ids), self._cut.get(b, 0)) for b, ids in self._buckets.items()}

    @property
    def pending(self) -> int:
        """Ids first seen since the last cut."""
        cut = self._cut
        return sum(len(ids) - cut.get(b, 0) for b, ids in self._buckets.items())

    def cut(self) -> Cut:
        """Take the ids first seen since the last cut, by hour bucket (a flush is cut)."""
        taken: list[tuple[int, list[int]]] = []
        before: dict[int, int] = {}
        cut = self._cut
        for bucket, ids in self._buckets.items():
            k = cut.get(bucket, 0)
            if len(ids) > k:
                taken.append((bucket, ids[k:]))
                before[bucket] = k
                cut[bucket] = len(ids)
        return taken, before

    def uncut(self, taken: Cut) -> None:
        """The write of a cut failed: its ids are pending again."""
        cut = self._cut
        for bucket, k in taken[1].items():
            if bucket in self._buckets:
                cut[bucket] = min(cut.get(bucket, 0), k)

    def load(self, pairs: Iterable[tuple[int, int]]) -> None:
        """Restore (hour bucket, id hash) pairs persisted by earlier flushes (not pending:
        they go before the bucket's cut mark)."""
        seen = self._seen
        loaded: dict[int, list[int]] = {}
        for bucket, h in pairs:
            if h not in seen:
                seen.add(h)
                loaded.setdefault(bucket, []).append(h)
        for bucket, new in loaded.items():
            ids = self._buckets.setdefault(bucket, [])
            k = self._cut.get(bucket, 0)
            ids[k:k] = new
            self._cut[bucket] = k + len(new)

    def expire(self, watermark_ms: int) -> int:
        """Forget ids whose hour bucket ended more than the horizon before the watermark."""
        limit = (watermark_ms - self.horizon_ms) // self.bucket_ms
        old = [b for b in self._buckets if b < limit]
        dropped = 0
        for b in old:
            ids = self._buckets.pop(b)
            self._cut.pop(b, None)
            self._seen.difference_update(ids)
            dropped += len(ids)
        return dropped
