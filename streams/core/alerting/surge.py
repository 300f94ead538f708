"""Demand-surge and rising-share rules, per (category, dimension, value) and hour.

The measure is *cell orders*: orders touching a demand cell, summed over the cells of the
key (orders, unlike units, do not jump with one buyer's pack size).

Surge at hour H for key k with parent category c:

- own baseline: the same local hour of day (the market's clock, ``MarketCalendar``) on the
  previous ``baseline_days`` days, the plain
  mean blended half-and-half with an EWMA over those days (recent days weigh more), so
  the baseline knows the time of day;
- prior: the parent's baseline (the same blend over the category) times k's long-run
  share of the category (Laplace-smoothed over the dimension's values);
- shrinkage: b = (n x own + K x prior) / (n + K), n = orders in k's same-hour history,
  K = ``shrink_orders``: a sparse long-tail cell leans on its parent instead of on a
  noisy history of zeros and ones;
- fires when observed >= ``min_orders`` and observed >= ``ratio`` x b and the
  overdispersed Poisson score (observed - b) / sqrt(dispersion x max(b, 1)) >=
  ``min_score``; clears below ``resolve_ratio`` x b. Critical at ``critical_ratio`` x b
  and above; back to warning only below ``ratio`` x b (hysteresis).

Rising share at hour H: k's share of its category's orders over the last 24 h against
its share over the ``baseline_days - 1`` days before; fires when the ratio of shares is
>= ``share_ratio``, the two-proportion z-score >= ``share_score`` and k had at least
``min_share_orders`` orders in the 24 h; clears when the ratio falls below
``share_resolve_ratio``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from streams.core.alerting.inputs import HOUR, CumSeries
from streams.core.calendar import UTC_CALENDAR, MarketCalendar
from streams.core.promotions import NO_PROMOTIONS, PromotionCalendar


@dataclass(frozen=True, slots=True)
class SurgeConfig:
    baseline_days: int = 7
    ewma_alpha: float = 0.5
    shrink_orders: float = 20.0
    min_orders: int = 12
    ratio: float = 2.5
    min_score: float = 5.0
    dispersion: float = 2.0  # variance / mean of hourly cell orders (sessions, multi-line)
    resolve_ratio: float = 1.5
    critical_ratio: float = 4.0
    share_ratio: float = 1.5
    share_score: float = 4.0
    min_share_orders: int = 30
    share_resolve_ratio: float = 1.2


@dataclass(frozen=True, slots=True)
class SurgeFinding:
    firing: bool
    clear: bool
    severity: str
    observed: float
    baseline: float
    ratio: float
    score: float
    downgrade_ok: bool = True


def _same_hour(
    series: CumSeries, hour: int, days: int, first: int, cal: MarketCalendar,
    promos: PromotionCalendar = NO_PROMOTIONS,
) -> list[float]:
    """Values at the same local hour on previous days, oldest first (only days with data,
    none of them a promotion day)."""
    out = []
    for d in range(days, 0, -1):
        t = cal.same_hour_days_back(hour, d)
        if t >= first and not (promos and promos.is_promo(cal.local_date(t).toordinal())):
            out.append(series.get(t, 0))
    return out


def promotion_lift(
    market: CumSeries, hour: int, first: int, cfg: SurgeConfig, cal: MarketCalendar,
    promos: PromotionCalendar,
) -> float:
    """On a known promotion day, how much the promotion lifts this hour: the factor
    stated in the calendar, else the whole market's orders this hour over their usual
    level (the same-hour baseline of days without a promotion); 1 on other days."""
    if not promos:
        return 1.0
    day = cal.local_date(hour).toordinal()
    if not promos.is_promo(day):
        return 1.0
    stated = promos.factor(day)
    if stated is not None:
        return stated
    usual = blended(_same_hour(market, hour, cfg.baseline_days, first, cal, promos),
                    cfg.ewma_alpha)
    return max(market.get(hour, 0) / usual, 1.0) if usual > 0 else 1.0


def blended(history: list[float], alpha: float) -> float:
    """Half the mean, half an EWMA (oldest first) of the same-hour history."""
    if not history:
        return 0.0
    ewma = float(history[0])
    for x in history[1:]:
        ewma = alpha * x + (1 - alpha) * ewma
    return 0.5 * (sum(history) / len(history)) + 0.5 * ewma


def evaluate_surge(
    series: CumSeries,
    parent: CumSeries,
    share: float,
    hour: int,
    first: int,
    cfg: SurgeConfig,
    cal: MarketCalendar = UTC_CALENDAR,
    promos: PromotionCalendar = NO_PROMOTIONS,
    lift: float = 1.0,
) -> SurgeFinding | None:
    """Surge finding for one key at ``hour``; None without a day of history. The
    baseline leaves promotion days out and is multiplied by ``lift`` (on a promotion
    day, ``promotion_lift``): a sale is not a surge, a surge beyond the sale is."""
    hist = _same_hour(series, hour, cfg.baseline_days, first, cal, promos)
    if not hist:
        return None
    parent_hist = _same_hour(parent, hour, cfg.baseline_days, first, cal, promos)
    own = blended(hist, cfg.ewma_alpha)
    prior = blended(parent_hist, cfg.ewma_alpha) * share
    n = float(sum(hist))
    base = lift * (n * own + cfg.shrink_orders * prior) / (n + cfg.shrink_orders)
    obs = float(series.get(hour, 0))
    score = (obs - base) / math.sqrt(cfg.dispersion * max(base, 1.0))
    ratio = obs / base if base > 0 else math.inf
    firing = obs >= cfg.min_orders and obs >= cfg.ratio * base and score >= cfg.min_score
    clear = obs < cfg.resolve_ratio * base or obs < cfg.min_orders / 2
    severity = "critical" if obs >= cfg.critical_ratio * base else "warning"
    downgrade_ok = obs < cfg.ratio * base
    return SurgeFinding(firing, clear, severity, obs, base, ratio, score, downgrade_ok)


def long_run_share(
    series: CumSeries, parent: CumSeries, hour: int, days: int, siblings: int,
    cal: MarketCalendar = UTC_CALENDAR,
) -> float:
    """k's Laplace-smoothed share of the parent over the ``days`` local days before ``hour``."""
    lo = cal.same_hour_days_back(hour, days)
    own = series.sum(lo, hour)
    total = parent.sum(lo, hour)
    return (own + 1.0) / (total + max(siblings, 1))


def evaluate_share(
    series: CumSeries,
    parent: CumSeries,
    hour: int,
    first: int,
    cfg: SurgeConfig,
    cal: MarketCalendar = UTC_CALENDAR,
) -> SurgeFinding | None:
    """Rising-share finding at ``hour`` (window: the local day ending with it)."""
    now_lo = cal.same_hour_days_back(hour + HOUR, 1)
    base_lo = max(cal.same_hour_days_back(hour + HOUR, cfg.baseline_days), first)
    if base_lo > cal.same_hour_days_back(now_lo, 1):
        return None
    x_now = series.sum(now_lo, hour + HOUR)
    n_now = parent.sum(now_lo, hour + HOUR)
    x_base = series.sum(base_lo, now_lo)
    n_base = parent.sum(base_lo, now_lo)
    if n_now == 0 or n_base == 0:
        return None
    s_now, s_base = x_now / n_now, (x_base + 0.5) / (n_base + 1.0)
    pooled = (x_now + x_base) / (n_now + n_base)
    se = math.sqrt(max(pooled * (1 - pooled), 1e-12) * (1 / n_now + 1 / n_base))
    score = (s_now - s_base) / se
    ratio = s_now / s_base
    firing = x_now >= cfg.min_share_orders and ratio >= cfg.share_ratio and score >= cfg.share_score
    clear = ratio < cfg.share_resolve_ratio
    return SurgeFinding(firing, clear, "info", s_now, s_base, ratio, score)
