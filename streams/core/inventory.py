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

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

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


@dataclass(slots=True)
class SkuHours:
    """The per-SKU hourly counters of one source partition. Hours are the market's hourly
    windows (``MarketCalendar.hour``: the UTC hour unless the zone's offset is not a whole
    number of hours)."""

    buckets: dict[SkuKey, list[int]] = field(default_factory=dict)
    dirty: set[SkuKey] = field(default_factory=set)
    #: epoch s -> start of its hour (the engine passes ``MarketCalendar.hour``)
    hour_of: Callable[[int], int] = utc_hour

    def bucket(self, sku: str, ts_ms: int) -> list[int]:
        key = (sku, self.hour_of(ts_ms // 1000))
        vec = self.buckets.get(key)
        if vec is None:
            vec = self.buckets[key] = [0, 0, 0, 0, 0, 0, 0, -1, 0]
        self.dirty.add(key)
        return vec

    def stock_count(self, sku: str, ts_ms: int, on_hand: int) -> None:
        """Keep the latest count of the hour (ties: the larger count, so order never matters)."""
        vec = self.bucket(sku, ts_ms)
        if (ts_ms, on_hand) > (vec[SKU_COUNT_TS], vec[SKU_COUNT_ON_HAND]):
            vec[SKU_COUNT_TS] = ts_ms
            vec[SKU_COUNT_ON_HAND] = on_hand

    def evict(self, keep_from_s: int) -> int:
        """Drop clean hours that end at or before ``keep_from_s``."""
        stale = [k for k in self.buckets if k[1] + HOUR_S <= keep_from_s and k not in self.dirty]
        for k in stale:
            del self.buckets[k]
        return len(stale)
