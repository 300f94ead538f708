"""Restock rule: inventory position against a lead-time-aware reorder point.

For one SKU as of time T (the end of an evaluated hour):

- demand rate: net units (ordered - cancelled) per hour the SKU was in stock, over the last
  ``history_days`` local days from its first hour with data (``streams.core.alerting.
  stock``: out-of-stock hours are not zero demand), x 24; sigma = the sample standard
  deviation of the whole in-stock days (a day runs from the same local clock time the day
  before: 23 or 25 hours across a daylight-saving change), or, with fewer than two, the
  overdispersed Poisson spread of the rate;
- cold start: with fewer than ``cold_hours`` (24) in-stock hours observed, the rule fires
  (critical) only when the stock will be gone before a run could arrive even at the 95%
  lower bound of the rate: a new product selling out is flagged at the end of its first
  hour, a noisy first hour of a healthy one is not;
- position: the latest stock count in the ``history_days`` before T, taken as on-hand at
  the start of its hour (see ``streams.core.inventory``: this can only understate
  stock), minus net units since, plus restock received since; in transit = restock
  shipped - received over the transit window before T: ``transit_lead_multiple`` x the
  lead time, at least ``history_days`` (a run takes up to a lead time to arrive; one not
  received in twice that is taken as lost). Both windows end at T, so the position does
  not depend on how much history a caller loaded beyond them;
- reorder point = rate x L' + z x sigma x sqrt(L'), z the normal quantile of the service
  level (95% -> 1.645) and L' = L + ``check_hours``/24, L the catalog lead time in days.
  The small extra is the periodic-review term: the rule is checked once per event-time
  hour, and a peak hour can take about twice the average hourly demand, so without it
  an alert could come an hour's peak demand after the position crossed rate x L;
- fires when on-hand + in-transit <= reorder point (and rate >= ``min_daily_rate``);
  clears only above reorder point x ``resolve_margin`` (hysteresis: no flapping);
- recommended quantity covers L + ``review_days`` at the service level, minus the
  position, at least the MOQ and rounded up to a multiple of it;
- days of cover = on-hand / rate; projected stockout = T + days of cover; severity is
  critical when that comes before a run ordered now could arrive (cover < L), and
  stays critical until the cover is back above 1.25 x L.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from statistics import NormalDist

from streams.core.alerting.inputs import (
    CANCELLED,
    COUNT_ON_HAND,
    COUNT_TS,
    DAY,
    HOUR,
    RECEIVED,
    SHIPPED,
    UNITS,
    Product,
    SkuCounts,
)
from streams.core.alerting.stock import SkuSeries
from streams.core.calendar import UTC_CALENDAR, MarketCalendar


@dataclass(frozen=True, slots=True)
class RestockConfig:
    service_level: float = 0.95
    history_days: int = 14
    min_history_days: int = 1
    review_days: int = 7
    min_daily_rate: float = 1.0
    resolve_margin: float = 1.1
    check_hours: float = 2.0
    transit_lead_multiple: float = 2.0
    #: below this many observed in-stock hours a SKU is judged on its cold-start rule
    cold_hours: int = 24
    #: variance / mean of daily units (multi-unit orders, sessions): the spread assumed
    #: while there are fewer than two whole days to measure it
    dispersion: float = 2.0

    @property
    def z(self) -> float:
        return NormalDist().inv_cdf(self.service_level)

    def transit_days(self, lead_time_days: int) -> float:
        """How far back restock shipments count as in transit (days)."""
        return max(float(self.history_days), self.transit_lead_multiple * lead_time_days)


@dataclass(frozen=True, slots=True)
class RestockFinding:
    sku: str
    firing: bool
    clear: bool  # above the reorder point by the resolve margin
    severity: str
    on_hand: int
    in_transit: int
    daily_rate: float
    daily_sigma: float
    reorder_point: float
    recommended_qty: int
    days_of_cover: float
    stockout_s: int | None  # projected stockout (epoch s), None without demand
    downgrade_ok: bool  # cover clearly above the lead time: critical may drop to warning
    observed_hours: int = 0  # in-stock hours the rate is taken over


def daily_net(
    series: SkuSeries, end_s: int, days: int, first_s: int,
    cal: MarketCalendar = UTC_CALENDAR,
) -> list[tuple[int, bool]]:
    """(net units, whole) per local day before ``end_s`` (each from the same clock time the
    day before), newest first, for the days that start at or after ``first_s``; ``whole``
    is False for a day with an out-of-stock hour (its net understates its demand)."""
    out: list[tuple[int, bool]] = []
    for d in range(days):
        hi = cal.same_hour_days_back(end_s, d)
        lo = cal.same_hour_days_back(end_s, d + 1)
        if lo < first_s:
            break
        out.append((series.net(lo, hi), series.oos_hours(lo, hi) == 0))
    return out


def position(
    hours: Mapping[int, SkuCounts], end_s: int, count_s: int, transit_s: int,
    cal: MarketCalendar = UTC_CALENDAR,
) -> tuple[int, int] | None:
    """(on hand, in transit) at ``end_s``: on hand from the latest stock count in the
    ``count_s`` seconds before it (None without one), in transit from the restock
    movements in the ``transit_s`` seconds before it."""
    end_ms = end_s * 1000
    anchor: int | None = None
    if hours:
        stop = max(min(hours), end_s - count_s)
        t = cal.hour(end_s - 1)
        while t >= stop:
            h = hours.get(t)
            if h is not None and 0 <= h[COUNT_TS] < end_ms:
                anchor = t
                break
            t -= HOUR
    if anchor is None:
        return None
    on_hand = hours[anchor][COUNT_ON_HAND]
    transit_from = end_s - transit_s
    shipped = received = 0
    for t, h in hours.items():
        if t >= end_s:
            continue
        if t >= transit_from:
            shipped += h[SHIPPED]
            received += h[RECEIVED]
        if t >= anchor:
            on_hand += h[RECEIVED] - h[UNITS] + h[CANCELLED]
    return on_hand, max(shipped - received, 0)


def evaluate_restock(
    product: Product,
    series: SkuSeries,
    end_s: int,
    first_s: int,
    cfg: RestockConfig,
    cal: MarketCalendar = UTC_CALENDAR,
) -> RestockFinding | None:
    """The restock finding for one SKU at ``end_s``; None when it cannot be judged.

    The rate is the SKU's net units per in-stock hour (``SkuSeries``: hours out of stock do
    not count as zero demand) over the last ``history_days`` local days, from the later
    of ``first_s`` (the first hour with data) and the SKU's own first hour. With fewer than
    ``cold_hours`` such hours (a new SKU, a new database) the rule judges only what cannot
    wait: it fires, critical, when the stock will be gone before a run ordered now could
    arrive even at the low end of the observed rate (its 95% lower bound, counts taken as
    overdispersed Poisson)."""
    hours = series.hours
    lo = max(cal.same_hour_days_back(end_s, cfg.history_days), first_s, series.first)
    in_hours = series.in_stock_hours(lo, end_s)
    if in_hours <= 0:
        return None
    transit_s = int(cfg.transit_days(product.lead_time_days) * DAY)
    pos = position(hours, end_s, cfg.history_days * DAY, transit_s, cal)
    if pos is None:
        return None
    on_hand, in_transit = pos
    net = series.in_stock_net(lo, end_s)
    rate = max(net, 0) * 24 / in_hours
    days = [
        d for d, full in daily_net(series, end_s, cfg.history_days, max(first_s, series.first),
                                   cal)
        if full
    ]
    if len(days) > 1:
        mean = sum(days) / len(days)
        sigma = math.sqrt(sum((d - mean) ** 2 for d in days) / (len(days) - 1))
    else:  # fewer than two whole in-stock days: overdispersed Poisson around the rate
        sigma = math.sqrt(cfg.dispersion * rate)
    lead = max(product.lead_time_days, 0)
    z = cfg.z
    protect = lead + cfg.check_hours / 24
    rop = rate * protect + z * sigma * math.sqrt(protect)
    total = on_hand + in_transit
    cold = in_hours < cfg.cold_hours
    if cold:
        # the low end of the rate: a few hours of data must not raise a false alarm
        low = max(net - z * math.sqrt(cfg.dispersion * max(net, 1)), 0.0) * 24 / in_hours
        firing = rate >= cfg.min_daily_rate and total - low * protect <= 0
    else:
        firing = rate >= cfg.min_daily_rate and total <= rop
    clear = rate < cfg.min_daily_rate or total > rop * cfg.resolve_margin
    cover_days = lead + cfg.review_days
    target = rate * cover_days + z * sigma * math.sqrt(cover_days)
    moq = max(product.moq, 1)
    qty = max(math.ceil(target - total), moq)
    qty = math.ceil(qty / moq) * moq
    if rate > 0:
        doc = max(on_hand, 0) / rate
        stockout: int | None = end_s + int(doc * DAY) // HOUR * HOUR
    else:
        doc, stockout = math.inf, None
    severity = "critical" if doc < lead or cold else "warning"
    return RestockFinding(
        product.sku, firing, clear, severity, on_hand, in_transit, rate, sigma, rop,
        qty, doc, stockout, doc >= 1.25 * lead and not cold, in_hours,
    )
