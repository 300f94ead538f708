"""The hourly series the alert rules read, for a span of event-time hours.

Hours are epoch seconds of the hour start. Everything is plain integers so that the
same inputs can be built from ClickHouse (``streams.alerting``) or, independently, from
raw events (the signal-quality tests).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, NamedTuple

HOUR: Final = 3600
DAY: Final = 86_400

#: Dimensions a demand signal is evaluated on, each within its category.
DIMENSIONS: Final = ("color", "size", "price_band")


@dataclass(frozen=True, slots=True)
class Product:
    sku: str
    factory_id: str
    category: str
    color: str
    size: str
    price_band: str
    lead_time_days: int
    moq: int
    list_price: float = 0.0
    #: the shop that lists the SKU (contributor of its SKU-level numbers: lost sales)
    shop_id: str = ""

    def value(self, dimension: str) -> str:
        return str(getattr(self, dimension))


class SkuHour(NamedTuple):
    """One (sku, hour) of ``c2m.sku_hourly``: the names and the order of ``SkuCounts``."""

    units: int = 0
    cancelled: int = 0
    shipped: int = 0  # restock_shipped units
    received: int = 0  # restock_received units
    count_ts: int = -1  # latest stock count in the hour (epoch ms), -1 if none
    count_on_hand: int = 0
    orders: int = 0  # orders holding the SKU
    pageviews: int = 0

    @property
    def net(self) -> int:
        return self.units - self.cancelled


#: How ``AlertInputs`` keeps a SKU hour: a plain tuple in ``SkuHour``'s field order, read
#: with the indexes below (or unpacked; a ``SkuHour`` reads the same but is kept as one
#: only in tests). Not an object: the alert service keeps 15 days of them (1.35 million
#: at 4,000 SKUs), and Python's cyclic collector stops tracking a plain tuple of numbers
#: (not a subclass such as a NamedTuple, not a dataclass instance), so its full
#: collections no longer walk them: they did, 0.76-1.04 s each, a pause of the worker's
#: event loop (bench/RESULTS.md).
SkuCounts = tuple[int, int, int, int, int, int, int, int]
UNITS, CANCELLED, SHIPPED, RECEIVED, COUNT_TS, COUNT_ON_HAND, ORDERS, PAGEVIEWS = range(8)


def sku_counts(
    units: int = 0, cancelled: int = 0, shipped: int = 0, received: int = 0,
    count_ts: int = -1, count_on_hand: int = 0, orders: int = 0, pageviews: int = 0,
) -> SkuCounts:
    """A SKU hour as kept (``SkuHour``'s fields and defaults, a plain tuple)."""
    return (units, cancelled, shipped, received, count_ts, count_on_hand, orders, pageviews)


#: (category, dimension, value)
SignalKey = tuple[str, str, str]


@dataclass(slots=True)
class AlertInputs:
    products: dict[str, Product] = field(default_factory=dict)
    #: sku -> hour -> counters
    sku_hours: dict[str, dict[int, SkuCounts]] = field(default_factory=dict)
    #: (category, dimension, value) -> hour -> orders touching that cell
    orders: dict[SignalKey, dict[int, int]] = field(default_factory=dict)
    #: category -> hour -> orders touching the category
    category_orders: dict[str, dict[int, int]] = field(default_factory=dict)
    #: (category, dimension, value) -> hour -> contributor tags of the shops whose orders
    #: the key counted (streams.core.kanon, family ORDER): who a market signal comes from
    order_shops: dict[SignalKey, dict[int, frozenset[int]]] = field(default_factory=dict)

    def first_hour(self) -> int | None:
        hours = [h for series in self.category_orders.values() for h in series]
        hours += [h for series in self.sku_hours.values() for h in series]
        return min(hours) if hours else None


class ShopSeries:
    """Distinct contributing shops of a key over sets of hours (few shops per key: each
    shop keeps its sorted hours)."""

    __slots__ = ("_hours", "_sets")

    def __init__(self, by_hour: dict[int, frozenset[int]]) -> None:
        per_shop: dict[int, list[int]] = {}
        for hour, tags in by_hour.items():
            for t in tags:
                per_shop.setdefault(t, []).append(hour)
        self._hours = [sorted(v) for v in per_shop.values()]
        self._sets = [frozenset(v) for v in per_shop.values()]

    def count(self, lo: int, hi: int) -> int:
        """Shops with a contribution in an hour t, lo <= t < hi."""
        from bisect import bisect_left

        n = 0
        for hours in self._hours:
            i = bisect_left(hours, lo)
            if i < len(hours) and hours[i] < hi:
                n += 1
        return n

    def count_at(self, hours: Iterable[int]) -> int:
        """Shops with a contribution in any of ``hours``."""
        wanted = frozenset(hours)
        return sum(1 for s in self._sets if not s.isdisjoint(wanted))


class CumSeries:
    """An hourly series with O(log n) sums over hour ranges (for many evaluations)."""

    __slots__ = ("_cum", "_hours", "values")

    def __init__(self, values: dict[int, int] | dict[int, float]) -> None:
        from itertools import accumulate

        self.values = values
        self._hours = sorted(values)
        self._cum = [0, *accumulate(values[h] for h in self._hours)]

    def get(self, hour: int, default: float = 0) -> float:
        return self.values.get(hour, default)

    def sum(self, lo: int, hi: int) -> float:
        """Sum over hours t with lo <= t < hi."""
        from bisect import bisect_left

        return self._cum[bisect_left(self._hours, hi)] - self._cum[bisect_left(self._hours, lo)]


# ---------------------------------------------------------------- kept between evaluations
def settled_before(
    watermarks: dict[tuple[str, int], int], expected: Iterable[tuple[str, int]],
    horizon_s: int,
) -> int | None:
    """The first hour that may still change: a partition applies an event only if it is
    at most ``horizon_s`` behind its watermark (epoch ms; later events are late events),
    so every hour before the earliest watermark minus the horizon is final. None when a
    partition has no watermark yet (it may still bring any hour)."""
    marks = [watermarks.get(tp, -1) for tp in {*expected, *watermarks}]
    if not marks or min(marks) < 0:
        return None
    t = min(marks) // 1000 - horizon_s
    return t - t % HOUR


def _hours_of(inputs: AlertInputs) -> set[int]:
    out: set[int] = set()
    for name in ("sku_hours", "orders", "category_orders", "order_shops"):
        for hours in getattr(inputs, name).values():
            out.update(hours)
    return out


def _drop(series: dict[Any, dict[int, Any]], hours: list[int]) -> None:
    """Remove ``hours`` from every key's series (and the keys left without any)."""
    if not hours:
        return
    for key in list(series):
        by_hour = series[key]
        for h in hours:
            by_hour.pop(h, None)
        if not by_hour:
            del series[key]


class InputCache:
    """The alert rules' inputs of the last evaluation, kept for the next one so that it
    reads only the hours that may have changed (``streams.alerting``: without it every
    hourly evaluation read its whole history, 15 days, again).

    A load for the span (lo, hi, movements_from) answers, for hours in [lo, hi), every
    SKU hour and cell and, for hours in [movements_from, lo), only the SKU hours with
    restock movements (``AlertStore.load_inputs``). ``plan`` says from which hour the
    next load must read: the cached hours before it were already final when they were
    read (before the last load's ``settled_before``); every later hour may be read again.
    Which of them changed since the last load, the store says from the checkpoints written
    since the ones ``seen`` then (``AlertStore.changed_hours``, migration 0012): ``partial``
    turns that into what to read, the hours after the kept span and the changed ones before
    it. ``take`` merges what was read and trims the rest to exactly what a load of the
    whole span gives (a test compares the two)."""

    __slots__ = ("_final", "_hours", "_inputs", "_marks", "_seen", "_span")

    def __init__(self) -> None:
        self._inputs: AlertInputs | None = None
        self._span: tuple[int, int, int] | None = None
        self._marks: dict[tuple[str, int], int] = {}
        #: every hour some series of the kept inputs holds
        self._hours: set[int] = set()
        #: the first hour that could still change when the kept inputs were read
        self._final: int | None = None
        #: the newest checkpoint of every partition (position, written_at ms), read before
        #: the kept inputs were
        self._seen: dict[tuple[str, int], tuple[int, int]] = {}

    def clear(self) -> None:
        self._inputs, self._span, self._marks, self._hours = None, None, {}, set()
        self._final, self._seen = None, {}

    @property
    def seen(self) -> dict[tuple[str, int], tuple[int, int]]:
        """The checkpoints read before the kept inputs (empty: none kept)."""
        return self._seen

    def partial(self, start: int, changed: set[int]) -> tuple[int, list[int]]:
        """For a load ``plan`` starts at ``start``, given the hours ``changed`` since the
        kept inputs were read: (read every hour from, and the changed hours before that).
        Every hour after the kept span is new to it; before, only the changed ones."""
        if self._span is None:
            raise ValueError("partial() needs kept inputs (plan returned a start)")
        range_from = max(start, self._span[1])
        return range_from, sorted(h for h in changed if start <= h < range_from)

    def plan(
        self, lo: int, hi: int, movements_from: int, settled: int | None,
        marks: dict[tuple[str, int], int],
    ) -> int | None:
        """The hour the load of the span must start at (with hours in [that, hi) in
        full, no movement hours); None: load the whole span. ``marks``: every source
        partition's watermark now; one that went back or went away (a partition reset, a
        replay) or a new partition drops the cache."""
        final = self._final  # hours before it were final when they were read
        if self._inputs is None or self._span is None or settled is None or final is None:
            return None
        if final < lo:
            return None  # movement hours before lo were read while they could change
        c_lo, c_hi, c_mf = self._span
        if set(marks) != set(self._marks) or any(
                marks[tp] < self._marks[tp] for tp in marks):
            return None
        if lo < c_lo or movements_from < c_mf or hi < c_hi:
            return None
        # every hour read at or after the last load's bound may have changed since
        return max(min(final, c_hi), lo)

    def take(
        self, lo: int, hi: int, movements_from: int, start: int | None, loaded: AlertInputs,
        marks: dict[tuple[str, int], int], settled: int | None = None,
        also: Sequence[int] = (), seen: dict[tuple[str, int], tuple[int, int]] | None = None,
    ) -> AlertInputs:
        """The inputs of the span from what was loaded (every hour from ``start`` and the
        hours ``also``, or the whole span when ``start`` is None) and the cache; kept for
        the next evaluation, with ``settled`` (what ``plan`` was given: the hours before
        it are final now, so the next load need not read them again) and ``seen`` (the
        checkpoint positions read before the load). The result is shared with the cache:
        readers must not change it."""
        if start is None or self._inputs is None:
            inputs = loaded
            present = _hours_of(loaded)
        else:
            # only the hours the cache holds are visited (hours x keys, not every entry)
            inputs = self._inputs
            inputs.products = loaded.products
            c_lo = self._span[0] if self._span is not None else lo
            again = set(also)
            stale = [h for h in self._hours if h >= start or h in again]
            gone = [h for h in self._hours if h < min(lo, movements_from)]
            # the hours that were in full and now fall before lo
            before_lo = sorted(h for h in self._hours if c_lo <= h < lo)
            for name in ("sku_hours", "orders", "category_orders", "order_shops"):
                cached = getattr(inputs, name)
                _drop(cached, stale)
                for key, hours in getattr(loaded, name).items():
                    cached.setdefault(key, {}).update(hours)
                if name != "sku_hours":
                    _drop(cached, before_lo)
            # hours now before lo keep only their restock movements, as a load gives them
            _drop(inputs.sku_hours, gone)
            moved = [h for h in before_lo if h >= movements_from]
            if moved:
                for sku in list(inputs.sku_hours):
                    hours = inputs.sku_hours[sku]
                    for h in moved:
                        old = hours.get(h)
                        if old is None:
                            continue
                        if old[SHIPPED] or old[RECEIVED]:
                            hours[h] = sku_counts(shipped=old[SHIPPED], received=old[RECEIVED])
                        else:
                            del hours[h]
                    if not hours:
                        del inputs.sku_hours[sku]
            present = (self._hours - set(stale) - set(gone)) | _hours_of(loaded)
        self._hours = present
        self._final = settled
        self._inputs, self._span, self._marks = inputs, (lo, hi, movements_from), dict(marks)
        self._seen = dict(seen or {})
        return inputs
