"""Stockouts and the demand they hide (issue 20): per SKU, the hours it was out of stock,
its demand rate over the hours it was in stock, and the demand it lost meanwhile.

A SKU with nothing on hand keeps its page views but gets no orders: counted as zero
demand, a stockout would look like falling demand to the restock rate, a surge when the
SKU comes back, a lost share, and a smaller brief. So:

- **out of stock**: an hour whose on-hand at its start is zero or less, in which nothing
  is received and nothing sold (a shop that sells on with nothing on hand, a presale,
  is not hiding demand). On-hand is known from the stock counts: a count is taken as on-hand at the
  start of its hour (as ``restock.position`` does), then moved by the hour's net units and
  receipts; between counts the last level carries. Before the first count of a SKU it is
  taken as in stock;
- **in-stock rate**: net units over the hours the SKU was in stock (and observed: from its
  first hour with data) per such hour;
- **lost demand** in an out-of-stock hour: its page views x the SKU's units (orders) per
  page view over its in-stock hours of the ``CONVERSION_DAYS`` before that hour, when those
  had at least ``MIN_VIEWS`` views (else nothing is estimated: not enough to know the
  SKU's conversion), less what it did sell in the hour. Lost GMV = lost units x list
  price. Each hour's estimate depends only on the days before it, so it is the same
  whichever tick of the alert service computes it (replays give the same numbers).

Everything is computed once per loaded span (``SkuSeries``) and answered per hour range
with cumulative sums, so a tick evaluating many hours stays cheap.
"""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass, field
from itertools import accumulate

from streams.core.alerting.inputs import HOUR, SkuHour

#: page views over in-stock hours below which a SKU's conversion is not estimated
MIN_VIEWS = 20
#: the in-stock days before an hour whose conversion prices its lost views
CONVERSION_DAYS = 7


@dataclass(slots=True)
class SkuSeries:
    """One SKU's hours, indexed for sums over hour ranges."""

    hours: dict[int, SkuHour]
    #: the SKU's first hour with any data (its demand is observed from there on)
    first: int
    #: out-of-stock hours, sorted
    oos: list[int] = field(default_factory=list)
    _keys: list[int] = field(default_factory=list)
    _net: list[int] = field(default_factory=list)
    _units: list[int] = field(default_factory=list)
    _orders: list[int] = field(default_factory=list)
    _views: list[int] = field(default_factory=list)
    _oos_views: list[int] = field(default_factory=list)

    @classmethod
    def build(cls, hours: dict[int, SkuHour], end_s: int) -> SkuSeries:
        keys = sorted(h for h in hours if h < end_s)
        first = keys[0] if keys else end_s
        oos: list[int] = []
        level: int | None = None
        prev: int | None = None
        for h in keys:
            b = hours[h]
            if prev is not None and level is not None and level <= 0:
                # the hours without data since the last one were out of stock too
                oos.extend(range(prev + HOUR, h, HOUR))
            start = b.count_on_hand if b.count_ts >= 0 else level
            if start is not None and start <= 0 and b.received == 0 and b.units == 0:
                oos.append(h)
            level = None if start is None else start - b.net + b.received
            prev = h
        if prev is not None and level is not None and level <= 0:
            oos.extend(range(prev + HOUR, end_s, HOUR))
        oos_set = set(oos)
        s = cls(hours, first, oos)
        s._keys = keys
        s._net = [0, *accumulate(hours[h].net for h in keys)]
        s._units = [0, *accumulate(hours[h].units for h in keys)]
        s._orders = [0, *accumulate(hours[h].orders for h in keys)]
        s._views = [0, *accumulate(hours[h].pageviews for h in keys)]
        s._oos_views = [0, *accumulate(
            hours[h].pageviews if h in oos_set else 0 for h in keys)]
        return s

    def _sum(self, cum: list[int], lo: int, hi: int) -> int:
        keys = self._keys
        return cum[bisect_left(keys, hi)] - cum[bisect_left(keys, lo)]

    def net(self, lo: int, hi: int) -> int:
        return self._sum(self._net, lo, hi)

    def oos_hours(self, lo: int, hi: int) -> int:
        return bisect_left(self.oos, hi) - bisect_left(self.oos, lo)

    def in_stock_hours(self, lo: int, hi: int) -> int:
        """Hours in [lo, hi) observed (from the SKU's first data) and in stock."""
        lo = max(lo, self.first)
        if hi <= lo:
            return 0
        return (hi - lo + HOUR - 1) // HOUR - self.oos_hours(lo, hi)

    def conversion(self, lo: int, hi: int) -> tuple[float, float] | None:
        """(units, orders) per page view over the in-stock hours of [lo, hi); None with
        fewer than MIN_VIEWS in-stock views."""
        views = self._sum(self._views, lo, hi) - self._sum(self._oos_views, lo, hi)
        if views < MIN_VIEWS:
            return None
        return self._sum(self._units, lo, hi) / views, self._sum(self._orders, lo, hi) / views

    def lost_hourly(self, lo: int, hi: int) -> dict[int, tuple[float, float]]:
        """Out-of-stock hour in [lo, hi) -> (units, orders) lost in it (see the module
        docstring; hours without an estimate are left out)."""
        out = {}
        back = CONVERSION_DAYS * 86_400
        for h in self.oos[bisect_left(self.oos, lo): bisect_left(self.oos, hi)]:
            b = self.hours.get(h)
            if b is None or not b.pageviews:
                continue
            conv = self.conversion(h - back, h)
            if conv is None:
                continue
            units = max(b.pageviews * conv[0] - b.units, 0.0)
            orders = max(b.pageviews * conv[1] - b.orders, 0.0)
            if units > 0 or orders > 0:
                out[h] = (units, orders)
        return out
