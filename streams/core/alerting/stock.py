"""Stockouts and the demand they hide (issue 20): per SKU, the hours it was out of stock,
its demand rate over the hours it was in stock, and the demand it lost meanwhile.

A SKU with nothing on hand keeps its page views but gets no orders: counted as zero
demand, a stockout would look like falling demand to the restock rate, a surge when the
SKU comes back, a lost share, and a smaller brief. So:

- **out of stock**: an hour whose on-hand at its start is zero or less, in which nothing
  is received and which sold nothing or less than half of its page views x in-stock
  conversion (the few units that come back from returns and sell at once do not make a
  SKU in stock; a shop that sells on at its usual pace with nothing on hand, a presale,
  is not hiding demand). On-hand is known from the stock counts: a count is taken as on-hand at the
  start of its hour (as ``restock.position`` does), then moved by the hour's net units and
  receipts; between counts the last level carries. Before the first count of a SKU it is
  taken as in stock;
- **in-stock rate**: net units over the hours the SKU was in stock (and observed: from its
  first hour with data) per such hour;
- **lost demand** in an out-of-stock hour: its page views x the SKU's units (orders) per
  page view over the hours of the ``CONVERSION_DAYS`` before that hour in which it was in
  stock from start to end (an hour it sold out in converts its views only until then),
  when those had at least ``MIN_VIEWS`` views; else its category's conversion over the
  same days (a new product that sold out in its first hour has no in-stock hours of its
  own); less what it did sell in the hour. Lost GMV = lost units x list
  price. Each hour's estimate depends only on the days before it, so it is the same
  whichever tick of the alert service computes it (replays give the same numbers).

Everything is computed once per loaded span (``SkuSeries``) and answered per hour range
with cumulative sums, so a tick evaluating many hours stays cheap.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from itertools import accumulate

from streams.core.alerting.inputs import HOUR, ORDERS, PAGEVIEWS, UNITS, SkuCounts

#: page views over in-stock hours below which a SKU's conversion is not estimated
MIN_VIEWS = 20
#: the in-stock days before an hour whose conversion prices its lost views
CONVERSION_DAYS = 7


@dataclass(slots=True)
class SkuSeries:
    """One SKU's hours, indexed for sums over hour ranges."""

    hours: Mapping[int, SkuCounts]
    #: the SKU's first hour with any data (its demand is observed from there on)
    first: int
    #: out-of-stock hours, sorted
    oos: list[int] = field(default_factory=list)
    _keys: list[int] = field(default_factory=list)
    _net: list[int] = field(default_factory=list)
    _units: list[int] = field(default_factory=list)
    _orders: list[int] = field(default_factory=list)
    _views: list[int] = field(default_factory=list)
    _oos_net: list[int] = field(default_factory=list)
    #: the hours in stock from start to end (``full``): what conversion is measured on
    full: list[int] = field(default_factory=list)
    _full_units: list[int] = field(default_factory=list)
    _full_orders: list[int] = field(default_factory=list)
    _full_views: list[int] = field(default_factory=list)

    @classmethod
    def build(cls, hours: Mapping[int, SkuCounts], end_s: int) -> SkuSeries:
        keys = sorted(h for h in hours if h < end_s)
        s = cls(hours, keys[0] if keys else end_s)
        s._keys = keys
        oos, full = s.oos, s.full
        net, units, orders, views, oos_net = (
            s._net, s._units, s._orders, s._views, s._oos_net)
        f_units, f_orders, f_views = s._full_units, s._full_orders, s._full_views
        for cum in (net, units, orders, views, oos_net, f_units, f_orders, f_views):
            cum.append(0)
        back = CONVERSION_DAYS * 86_400
        level: int | None = None
        prev: int | None = None
        for h in keys:
            units_h, cancelled, _, received, count_ts, count_on_hand, orders_h, views_h = hours[h]
            net_h = units_h - cancelled
            if prev is not None and level is not None and level <= 0:
                # the hours without data since the last one were out of stock too
                oos.extend(range(prev + HOUR, h, HOUR))
            start = count_on_hand if count_ts >= 0 else level
            end = None if start is None else start - net_h + received
            out = False
            if start is not None and start <= 0 and received == 0:
                # nothing on hand and nothing received: out of stock unless it sold about
                # as it does in stock (a presale); a few units back from returns do not
                # make it in stock
                if units_h == 0:
                    out = True
                else:
                    conv = s.own_conversion(h - back, h)  # the sums so far: hours < h
                    out = conv is not None and units_h < 0.5 * views_h * conv[0]
            whole = not out and (start is None or start > 0) and (end is None or end > 0)
            if out:
                oos.append(h)
            if whole:
                full.append(h)
            level = end
            prev = h
            net.append(net[-1] + net_h)
            units.append(units[-1] + units_h)
            orders.append(orders[-1] + orders_h)
            views.append(views[-1] + views_h)
            oos_net.append(oos_net[-1] + (net_h if out else 0))
            f_units.append(f_units[-1] + (units_h if whole else 0))
            f_orders.append(f_orders[-1] + (orders_h if whole else 0))
            f_views.append(f_views[-1] + (views_h if whole else 0))
        if prev is not None and level is not None and level <= 0:
            oos.extend(range(prev + HOUR, end_s, HOUR))
        return s

    def _sum(self, cum: list[int], lo: int, hi: int) -> int:
        keys = self._keys
        return cum[bisect_left(keys, hi)] - cum[bisect_left(keys, lo)]

    def net(self, lo: int, hi: int) -> int:
        return self._sum(self._net, lo, hi)

    def in_stock_net(self, lo: int, hi: int) -> int:
        """Net units of the in-stock hours of [lo, hi)."""
        return self._sum(self._net, lo, hi) - self._sum(self._oos_net, lo, hi)

    def oos_hours(self, lo: int, hi: int) -> int:
        return bisect_left(self.oos, hi) - bisect_left(self.oos, lo)

    def in_stock_hours(self, lo: int, hi: int) -> int:
        """Hours in [lo, hi) observed (from the SKU's first data) and in stock."""
        lo = max(lo, self.first)
        if hi <= lo:
            return 0
        return (hi - lo + HOUR - 1) // HOUR - self.oos_hours(lo, hi)

    def full_sums(self, lo: int, hi: int) -> tuple[int, int, int]:
        """(units, orders, page views) over the hours of [lo, hi) in stock throughout."""
        return (self._sum(self._full_units, lo, hi), self._sum(self._full_orders, lo, hi),
                self._sum(self._full_views, lo, hi))

    def own_conversion(self, lo: int, hi: int) -> tuple[float, float] | None:
        """(units, orders) per page view over the hours of [lo, hi) the SKU was in stock
        from start to end (an hour it sold out in converts its views only until then);
        None with fewer than MIN_VIEWS such views."""
        units, orders, views = self.full_sums(lo, hi)
        if views < MIN_VIEWS:
            return None
        return units / views, orders / views

    def lost_hourly(
        self, lo: int, hi: int, fallback: Conversion | None = None,
    ) -> dict[int, tuple[float, float]]:
        """Out-of-stock hour in [lo, hi) -> (units, orders) lost in it (see the module
        docstring; hours without an estimate are left out). ``fallback(lo, hi)`` prices
        the views of a SKU without enough in-stock views of its own (a new product that
        sold out in its first hour): its category's conversion over the same days."""
        out = {}
        back = CONVERSION_DAYS * 86_400
        for h in self.oos[bisect_left(self.oos, lo): bisect_left(self.oos, hi)]:
            b = self.hours.get(h)
            if b is None or not b[PAGEVIEWS]:
                continue
            conv = self.own_conversion(h - back, h)
            if conv is None and fallback is not None:
                conv = fallback(h - back, h)
            if conv is None:
                continue
            units = max(b[PAGEVIEWS] * conv[0] - b[UNITS], 0.0)
            orders = max(b[PAGEVIEWS] * conv[1] - b[ORDERS], 0.0)
            if units > 0 or orders > 0:
                out[h] = (units, orders)
        return out


#: (lo, hi) -> (units, orders) per page view, or None
Conversion = Callable[[int, int], "tuple[float, float] | None"]


class CategoryConversion:
    """A category's conversion over hour ranges: the in-stock-throughout hours of all its
    SKUs (the prior for a SKU with too few views of its own)."""

    def __init__(self, series: list[SkuSeries]) -> None:
        units: dict[int, int] = {}
        orders: dict[int, int] = {}
        views: dict[int, int] = {}
        for sr in series:
            for h in sr.full:
                b = sr.hours[h]
                units[h] = units.get(h, 0) + b[UNITS]
                orders[h] = orders.get(h, 0) + b[ORDERS]
                views[h] = views.get(h, 0) + b[PAGEVIEWS]
        self._hours = sorted(views)
        self._units = [0, *accumulate(units[h] for h in self._hours)]
        self._orders = [0, *accumulate(orders[h] for h in self._hours)]
        self._views = [0, *accumulate(views[h] for h in self._hours)]

    def __call__(self, lo: int, hi: int) -> tuple[float, float] | None:
        a, b = bisect_left(self._hours, lo), bisect_left(self._hours, hi)
        views = self._views[b] - self._views[a]
        if views < MIN_VIEWS:
            return None
        units = self._units[b] - self._units[a]
        return units / views, (self._orders[b] - self._orders[a]) / views
