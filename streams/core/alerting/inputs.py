"""The hourly series the alert rules read, for a span of event-time hours.

Hours are epoch seconds of the hour start. Everything is plain integers so that the
same inputs can be built from ClickHouse (``streams.alerting``) or, independently, from
raw events (the signal-quality tests).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final

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


@dataclass(slots=True)
class SkuHour:
    """One (sku, hour) of ``c2m.sku_hourly``."""

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


#: (category, dimension, value)
SignalKey = tuple[str, str, str]


@dataclass(slots=True)
class AlertInputs:
    products: dict[str, Product] = field(default_factory=dict)
    #: sku -> hour -> counters
    sku_hours: dict[str, dict[int, SkuHour]] = field(default_factory=dict)
    #: (category, dimension, value) -> hour -> orders touching that cell
    orders: dict[SignalKey, dict[int, int]] = field(default_factory=dict)
    #: category -> hour -> orders touching the category
    category_orders: dict[str, dict[int, int]] = field(default_factory=dict)
    #: (category, dimension, value) -> hour -> contributor tags of the shops whose orders
    #: the key counted (streams.core.kanon, family ORDER): who a market signal comes from
    order_shops: dict[SignalKey, dict[int, frozenset[int]]] = field(default_factory=dict)

    def factories_of(self, category: str) -> list[str]:
        return sorted({p.factory_id for p in self.products.values() if p.category == category})

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
