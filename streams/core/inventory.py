"""Per-SKU hourly counters: what restock alerts and the production brief are built from.

Demand cells (``streams.core.demand``) group by attributes and lose the SKU; inventory is
per SKU. Each source partition keeps, per (sku, hour), integer counters of the orders,
page views and logistics movements it saw, plus the latest stock count of that hour. Like
the cells they are absolute per-partition values written with the partition position as
version; ClickHouse sums them over partitions (``c2m.sku_hourly``).

Inventory position at a time T (computed in ``streams.core.restock`` and in SQL):

- the anchor is the latest ``stock_level`` count with ts < T; it is taken as the on-hand
  at the *start of its hour*, so demand in that hour and after reduces it. Demand between
  the hour start and the count's ts is then counted twice, which can only *understate*
  stock: a restock alert may come a little early, never late;
- on-hand = count - (ordered - cancelled units since the anchor hour) + restock received
  since the anchor hour (returns are not assumed to be resellable);
- in transit = restock shipped - restock received (never below zero).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, Final, Generic, TypeVar

HOUR_S: Final = 3600

# Slots of the per-(sku, hour) vector.
SKU_ORDERS: Final = 0
SKU_UNITS: Final = 1
SKU_CANCELLED: Final = 2
SKU_RETURNED: Final = 3
SKU_PAGEVIEWS: Final = 4
SKU_SHIPPED: Final = 5  # restock_shipped units
SKU_RECEIVED: Final = 6  # restock_received units
SKU_COUNT_TS: Final = 7  # ts (epoch ms) of the latest stock count in the hour, -1 if none
SKU_COUNT_ON_HAND: Final = 8
SKU_MEASURES: Final = (
    "orders", "units", "cancelled_units", "returned_units", "pageviews",
    "restock_shipped", "restock_received", "count_ts", "count_on_hand",
)

#: (sku, hour start in epoch seconds)
SkuKey = tuple[str, int]


def utc_hour(ts_s: int) -> int:
    """Start of the UTC hour holding ``ts_s`` (epoch seconds)."""
    return ts_s - ts_s % HOUR_S


_I64_MIN: Final = -(1 << 63)
_I64_MAX: Final = (1 << 63) - 1


def add_int64(vec: list[int], slot: int, n: int, owner: str) -> None:
    """``vec[slot] += n`` as the compiled stores do it: a 64-bit counter, which refuses
    (unchanged) a sum beyond 64 bits."""
    got = vec[slot] + n
    if not _I64_MIN <= got <= _I64_MAX:
        raise OverflowError(f"{owner}: a counter beyond 64 bits")
    vec[slot] = got


K = TypeVar("K", bound=tuple[Any, ...])


class CounterStore(Generic[K]):
    """What the pure-Python twins of the compiled counter stores share (``SkuHours`` here,
    ``streams.core.demand.Cells``), as the compiled ones share their marks' code: counters
    by key, the keys changed since the last cut *marked* in the order marked, a cut that
    takes the marks (a flush) and gives them back (its write failed), flush rows."""

    __slots__ = ("_marked", "_v")

    def __init__(self) -> None:
        self._v: dict[K, list[int]] = {}
        self._marked: dict[K, None] = {}  # (a dict: the order marked)

    def __len__(self) -> int:
        return len(self._v)

    @property
    def pending(self) -> int:
        """Keys changed since the last cut."""
        return len(self._marked)

    def _key_arg(self, key: object) -> None:
        """Refuse a key of the wrong shape (TypeError); by default any is looked up."""

    def cut(self) -> list[K]:
        """Take the marks: the keys changed since the last cut, in the order marked."""
        keys = list(self._marked)
        self._marked = {}
        return keys

    def uncut(self, keys: Iterable[K]) -> None:
        """The write of a cut failed: its keys are marked again (none if one is not
        held)."""
        keys = list(keys)
        for key in keys:
            self._key_arg(key)
            if key not in self._v:
                raise KeyError(key)
        for key in keys:
            self._marked[key] = None

    def marked(self) -> list[K]:
        return list(self._marked)

    @staticmethod
    def _counters(vec: Sequence[int], n: int, wrong_size: str) -> list[int]:
        """A persisted counter vector: n ints of 64 bits (as the compiled stores take)."""
        counters = list(vec)
        if len(counters) != n:
            raise ValueError(wrong_size)
        for x in counters:
            if not isinstance(x, int):
                raise TypeError("an int expected")
            if not _I64_MIN <= x <= _I64_MAX:
                raise OverflowError("a counter beyond 64 bits")
        return [int(x) for x in counters]

    def rows(self, topic: str, partition: int, keys: Iterable[K], version: int
             ) -> list[tuple[Any, ...]]:
        """The flush rows of ``keys``: (topic, partition, *key, *counters, version)."""
        keys = list(keys)
        for key in keys:
            self._key_arg(key)
        v = self._v
        return [(topic, partition, *key, *v[key], version) for key in keys]

    def snapshot(self) -> dict[K, list[int]]:
        return {k: list(v) for k, v in self._v.items()}


class SkuHours(CounterStore[SkuKey]):
    """The per-SKU hourly counters of one source partition: the pure-Python reference of
    the compiled core's ``_lanes.SkuHours`` (the same methods and results; a native engine
    uses that one, ``tests/unit/test_compiled_lanes.py`` compares the two). Hours are the
    market's hourly windows (``hour_of``: ``MarketCalendar.hour``, the UTC hour unless
    the zone's offset is not a whole number of hours).

    An hour changed since the last cut is *marked*; ``cut`` takes the marks (a flush)
    and ``uncut`` gives them back (its write failed). ``handle`` names an hour for
    ``add`` (the page-view lane keeps it in its entry): here the key itself, in the
    compiled core the entry's index with the number of cuts made (refused after the
    next cut); a marked hour is never evicted."""

    __slots__ = ("hour_of",)

    def __init__(self, *, hour_of: Callable[[int], int] = utc_hour) -> None:
        super().__init__()
        #: epoch s -> start of its hour (the engine passes ``MarketCalendar.hour``)
        self.hour_of = hour_of

    def handle(self, sku: str, ts_ms: int) -> SkuKey:
        """The hour of (``sku``, ``ts_ms``), made (zeros, no count) if new, and marked."""
        if type(sku) is not str:
            raise TypeError("SkuHours: the SKU must be a str")
        key = (sku, self.hour_of(ts_ms // 1000))
        if key not in self._v:
            self._v[key] = [0, 0, 0, 0, 0, 0, 0, -1, 0]
        self._marked[key] = None
        return key

    def add(self, handle: SkuKey, slot: int, n: int) -> None:
        """Counter ``slot`` of the handle's hour += ``n`` (not the stock count's slots)."""
        if not 0 <= slot < SKU_COUNT_TS:
            raise ValueError("add: slot is not a counter")
        add_int64(self._v[handle], slot, n, "SkuHours")

    def stock_count(self, sku: str, ts_ms: int, on_hand: int) -> None:
        """Keep the latest count of the hour (ties: the larger count, so order never matters)."""
        vec = self._v[self.handle(sku, ts_ms)]
        if (ts_ms, on_hand) > (vec[SKU_COUNT_TS], vec[SKU_COUNT_ON_HAND]):
            vec[SKU_COUNT_TS] = ts_ms
            vec[SKU_COUNT_ON_HAND] = on_hand

    def get(self, sku: str, hour: int) -> list[int] | None:
        if type(sku) is not str:
            raise TypeError("SkuHours: the SKU must be a str")
        vec = self._v.get((sku, hour))
        return None if vec is None else list(vec)

    def key_of(self, handle: SkuKey) -> SkuKey:
        if handle not in self._v:
            raise KeyError("SkuHours: not a live handle")
        return handle

    def load(self, pairs: Iterable[tuple[SkuKey, Sequence[int]]]) -> None:
        """Restore persisted ((sku, hour), counters) pairs (not marked)."""
        for (sku, hour), vec in pairs:
            counters = self._counters(vec, len(SKU_MEASURES), "load: nine counters expected")
            if type(sku) is not str or not isinstance(hour, int):
                raise TypeError("load: ((sku, hour), counters) pairs expected")
            self._v[sku, int(hour)] = counters

    def evict(self, keep_from_s: int) -> int:
        """Drop the clean hours that end at or before ``keep_from_s``."""
        marked = self._marked
        stale = [k for k in self._v if k[1] + HOUR_S <= keep_from_s and k not in marked]
        for k in stale:
            del self._v[k]
        return len(stale)

