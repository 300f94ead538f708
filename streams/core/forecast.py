"""Demand forecast for the production brief (issue 20): trend, weekly pattern, promotions.

Input, per category: the daily demand of each *cell* (colour, size, price band) over the
market's local days up to the last complete one. Demand is net units (ordered less
cancelled and returned) plus the units lost to stockouts (``stock``): what shoppers
wanted, not what the shelf allowed. Output, per brief row (the category total, each
colour, size and price band): the expected demand summed over the next 1..H days and the
standard deviation of that sum, from which the brief takes a run's quantity and its 95%
interval for any run length up to H days.

Method (chosen by the rolling-origin backtest in ``tests/signals/backtest.py``; numbers
in docs/ALERTS.md):

1. **The category's profile**, shared by its cells (a cell alone has too few units to
   show a weekly pattern or a trend):
   - weekday factors: each day's demand over its centred 7-day mean (windows without a
     promotion day), averaged per weekday, normalised to mean 1 and shrunk towards 1 by
     k / (k + 1) with k the weeks seen (none before two weeks);
   - promotion uplift: the promotion days in the history against the days around them;
     a factor stated in the calendar wins (``promotions``);
   - level and trend: over the last ``level_days`` days of deseasonalised demand
     (weekday and promotion divided out), the best by BIC of a flat mean, exponential
     growth (a least-squares line through the logs, kept only when its slope is at least
     ``trend_t`` standard errors from zero: a flat series stays flat; damped by
     ``damping`` per day ahead) and a step (a level shift in the last three weeks: a
     launch taking share, a listing lost; the mean after it).
2. **Each cell's level**: the mean of its deseasonalised demand over the last
   ``level_days`` days from its first sale (a new product is not diluted by the days
   before it existed); the cells that sold over the whole window are scaled together so
   that all cells add up to the category's level at the last day (the mix comes from a
   month, the level knows the trend or the shift).
3. **The forecast** of a cell for day d ahead: level x exp(growth x damped days) x the
   weekday factor of that date x the uplift if it is a promotion day. Brief rows are sums
   of cells: sizes add up to their colours and colours to the category by construction
   (bottom-up reconciliation; price bands too).
4. **Uncertainty** of a row's sum over d days: day-to-day noise (the row's in-sample
   variance-to-mean ratio over the level window, at least 1, times the expected sum),
   plus the error of each cell's level (its sample variance over the window / days,
   independent between cells), plus the error of the growth estimate (common to all
   cells), plus ``promo_cv`` of the promotion lift on promotion days when the lift was
   estimated rather than stated.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from operator import add

from streams.core.promotions import NO_PROMOTIONS, PromotionCalendar

#: (colour, size, price band)
Cell = tuple[str, str, str]
#: (dimension, value): ("total", ""), ("color", "red"), ...
Row = tuple[str, str]
DIMENSIONS = ("color", "size", "price_band")


@dataclass(frozen=True, slots=True)
class ForecastConfig:
    horizon_days: int = 90
    #: local days of demand the forecast reads (8 weeks: enough weeks for the weekday
    #: pattern, a trend and the promotion lift, and no more than the brief's backtest saw)
    history_days: int = 56
    level_days: int = 28
    trend_days: int = 28
    min_trend_days: int = 14
    trend_t: float = 3.0
    damping: float = 1.0
    #: relative error of an estimated (not stated) promotion lift
    promo_cv: float = 0.1
    #: variance-to-mean ratio assumed for a cell with fewer than 7 days
    short_dispersion: float = 2.0
    #: a level shift is looked for between these many days ago
    min_step_age: int = 3
    max_step_age: int = 21
    step_penalty: float = 6.0
    #: a cell's own shift must be clearer (there are many cells to find one by chance)
    cell_step_penalty: float = 10.0
    #: relative error of any forecast beyond the terms above (the model is not the truth)
    model_cv: float = 0.0


@dataclass(slots=True)
class Profile:
    """A category's shared shape: weekday factors (Monday first), promotion lift, growth."""

    weekday: tuple[float, ...] = (1.0,) * 7
    uplift: float = 1.0
    uplift_days: int = 0  # promotion days it was estimated from
    growth: float = 0.0  # relative change per day at the last day (0: no trend)
    growth_se: float = 0.0
    history_days: int = 0
    #: the category's level model: mean, trend or step
    model: str = "mean"
    level: float = 0.0  # deseasonalised units a day at the last day
    level_se: float = 0.0


@dataclass(slots=True)
class RowForecast:
    #: expected demand summed over days 1..k ahead, k = 1..horizon
    cum_mean: list[float]
    #: standard deviation of that sum
    cum_sd: list[float]

    def total(self, days: int) -> tuple[float, float]:
        k = min(max(days, 1), len(self.cum_mean)) - 1
        return self.cum_mean[k], self.cum_sd[k]


@dataclass(slots=True)
class CategoryForecast:
    profile: Profile
    rows: dict[Row, RowForecast] = field(default_factory=dict)


def _weekday(day: int) -> int:
    return date.fromordinal(day).weekday()


def _first_positive(values: Sequence[float]) -> int | None:
    for i, v in enumerate(values):
        if v > 0:
            return i
    return None


def _profile(
    total: Sequence[float], first_day: int, start: int, promos: PromotionCalendar,
    cfg: ForecastConfig,
) -> tuple[Profile, list[float]]:
    """The category's profile and each day's multiplier (weekday x lift) over the history."""
    n = len(total)
    days = [first_day + t for t in range(n)]
    promo = [promos.is_promo(d) for d in days]
    # weekday factors: ratio to the centred 7-day mean
    ratios: list[list[float]] = [[] for _ in range(7)]
    for t in range(start + 3, n - 3):
        if promo[t] or any(promo[t - 3: t + 4]):
            continue
        ma = sum(total[t - 3: t + 4]) / 7
        if ma > 0:
            ratios[_weekday(days[t])].append(total[t] / ma)
    weekday = [1.0] * 7
    k = min(len(r) for r in ratios)
    if k >= 2:
        raw = [sum(r) / len(r) for r in ratios]
        mean = sum(raw) / 7
        if mean > 0:
            raw = [x / mean for x in raw]
            # shrink towards 1 by the share of the weekdays' spread that is not noise
            noise = sum(sum((x - sum(r) / len(r)) ** 2 for x in r) / (len(r) - 1) / len(r)
                        for r in ratios) / 7 / mean ** 2
            spread = sum((x - 1) ** 2 for x in raw) / 6
            shrink = max(0.0, 1 - noise / spread) if spread > 0 else 0.0
            weekday = [1 + (x - 1) * shrink for x in raw]
    # promotion lift from the history's promotion days against the days around them
    num = den = 0.0
    seen = 0
    for t in range(start, n):
        if not promo[t]:
            continue
        around = [total[i] / weekday[_weekday(days[i])] for i in range(max(start, t - 7),
                  min(n, t + 8)) if not promo[i]]
        if len(around) >= 4:
            num += total[t]
            den += sum(around) / len(around) * weekday[_weekday(days[t])]
            seen += 1
    uplift = num / den if den > 0 and num > 0 else 1.0
    prof = Profile(tuple(weekday), uplift, seen, history_days=n - start)
    mult = [_multiplier(prof, promos, d) for d in days]
    return prof, mult


def _ols(xs: Sequence[int] | range, ys: Sequence[float]) -> tuple[float, float, float, float]:
    """(intercept at the mean x, slope, residual sum of squares, slope standard error)."""
    m = len(xs)
    xbar, ybar = sum(xs) / m, sum(ys) / m
    sxx = sum((x - xbar) ** 2 for x in xs)
    slope = sum((x - xbar) * (y - ybar) for x, y in zip(xs, ys, strict=True)) / sxx
    rss = sum((y - ybar - slope * (x - xbar)) ** 2 for x, y in zip(xs, ys, strict=True))
    return ybar, slope, rss, math.sqrt(rss / (m - 2) / sxx) if m > 2 else math.inf


def _level(
    zs: Sequence[float], cfg: ForecastConfig, prior: tuple[float, float] | None = None,
) -> tuple[float, float, float, float, str]:
    """The category's deseasonalised level at the last day of ``zs`` and how it moves:
    (level, growth per day as a log rate, growth's standard error, level's standard
    error, model). Three models compete by BIC over the window: flat (the mean),
    exponential growth (a line through the logs, kept only at ``trend_t`` standard
    errors; a category with a day without demand is too sparse for it) and a step (a
    level shift: a launch, a lost listing; the mean after it). With ``prior`` (the
    market's growth and its standard error) a fourth: the market's growth with this
    category's own level, unless the category's own slope contradicts it (a category
    too small to show a trend of its own grows with its market)."""
    m = len(zs)
    mean = sum(zs) / m
    rss_flat = sum((z - mean) ** 2 for z in zs)
    var = rss_flat / (m - 1) if m > 1 else mean
    if m < cfg.min_trend_days or rss_flat <= 0:
        return mean, 0.0, 0.0, math.sqrt(var / m), "mean"

    def bic(rss: float, params: int) -> float:
        return m * math.log(max(rss, 1e-9) / m) + params * math.log(m)

    best = (bic(rss_flat, 1), "mean", mean, 0.0, 0.0, math.sqrt(var / m))
    seen = [best]
    xs = list(range(m))
    if min(zs) > 0:
        # exponential growth: a line through the logs (the level moves by a share a day)
        logs = [math.log(z) for z in zs]
        centre_log, slope, rss_log, se = _ols(xs, logs)
        s2 = rss_log / (m - 2)
        fit = [math.exp(centre_log + slope * (x - (m - 1) / 2) + s2 / 2) for x in xs]
        end = fit[-1]
        rss_line = sum((z - f) ** 2 for z, f in zip(zs, fit, strict=True))
        if se > 0 and abs(slope) / se >= cfg.trend_t:
            se_end = end * math.sqrt(s2 * (1 / m + ((m - 1) / 2) ** 2
                                           / sum((x - (m - 1) / 2) ** 2 for x in xs)))
            cand = (bic(rss_line, 2), "trend", end, slope, se, se_end)
            seen.append(cand)
            best = min(best, cand, key=lambda c: c[0])
    else:
        slope = se = math.nan
    if prior is not None:
        g, g_se = prior
        own_ok = math.isnan(slope) or abs(slope - g) <= cfg.trend_t * math.hypot(se, g_se)
        if own_ok:
            curve = [math.exp(g * (x - (m - 1))) for x in xs]
            # the level at the end with the slope fixed (least squares)
            end = sum(z * f for z, f in zip(zs, curve, strict=True)) / sum(f * f for f in curve)
            rss = sum((z - end * f) ** 2 for z, f in zip(zs, curve, strict=True))
            cand = (bic(rss, 1), "market trend", end, g, g_se,
                    math.sqrt(rss / (m - 1) / m))
            # the market's growth replaces the flat mean: a category whose own slope
            # agrees with it grows with it
            seen[0] = cand
            best = min(seen, key=lambda c: c[0])
    for k, rss, mb in _steps(zs, cfg):
        # a step costs more than its two means: its place was chosen among many
        cand = (bic(rss, 3) + cfg.step_penalty, "step", mb, 0.0, 0.0,
                math.sqrt(rss / (m - 2) / (m - k)))
        seen.append(cand)
        best = min(best, cand, key=lambda c: c[0])
    _, model, level, growth, growth_se, level_se = best
    # the models' disagreement is uncertainty too: the BIC-weighted spread of their levels
    weights = [math.exp((best[0] - c[0]) / 2) for c in seen]
    spread = sum(w * (c[2] - level) ** 2 for w, c in zip(weights, seen, strict=True))
    level_se = math.sqrt(level_se ** 2 + spread / sum(weights))
    return level, growth, growth_se, level_se, model


def _steps(zs: Sequence[float], cfg: ForecastConfig) -> list[tuple[int, float, float]]:
    """Each candidate step k (the level changes from day k of ``zs``, within the last
    ``min_step_age``..``max_step_age`` days, at least 4 days before it): (k, residual sum
    of squares of the two means, the mean after). Prefix sums: O(len(zs))."""
    m = len(zs)
    s1 = [0.0]
    s2 = [0.0]
    for z in zs:
        s1.append(s1[-1] + z)
        s2.append(s2[-1] + z * z)
    out = []
    for k in range(max(m - cfg.max_step_age, 4), m - cfg.min_step_age + 1):
        a1, a2, b1, b2 = s1[k], s2[k], s1[m] - s1[k], s2[m] - s2[k]
        rss = (a2 - a1 * a1 / k) + (b2 - b1 * b1 / (m - k))
        out.append((k, max(rss, 0.0), b1 / (m - k)))
    return out


def _shift(zs: Sequence[float], cfg: ForecastConfig) -> int | None:
    """Where a cell's level shifted within the last weeks (a launch into the cell, a
    listing lost), when a step beats both the flat mean and a line by BIC plus
    ``cell_step_penalty``."""
    m = len(zs)
    if m < cfg.min_trend_days:
        return None
    mean = sum(zs) / m
    rss_flat = sum((z - mean) ** 2 for z in zs)
    if rss_flat <= 0:
        return None
    best, at = m * math.log(rss_flat / m) + math.log(m), None
    _, _, rss_line, _ = _ols(range(m), zs)  # a trend is not a shift
    best = min(best, m * math.log(max(rss_line, 1e-9) / m) + 2 * math.log(m))
    for k, rss, _ in _steps(zs, cfg):
        score = m * math.log(max(rss, 1e-9) / m) + 3 * math.log(m) + cfg.cell_step_penalty
        if score < best:
            best, at = score, k
    return at


def _multiplier(prof: Profile, promos: PromotionCalendar, day: int) -> float:
    f = prof.weekday[_weekday(day)]
    if promos.is_promo(day):
        stated = promos.factor(day)
        f *= stated if stated is not None else prof.uplift
    return f


def _vsum(vectors: Iterable[Sequence[float]], length: int) -> list[float]:
    """The element-wise sum of ``vectors`` (each ``length`` long), added left to right in
    the order given from an integer 0 (as Python 3.11's ``sum`` adds each position; from
    3.12 ``sum`` compensates float rounding), without a generator per position."""
    acc: list[float] = [0] * length
    for v in vectors:
        if len(v) != length:
            raise ValueError(f"a vector of {len(v)} values, not {length}")
        acc = list(map(add, acc, v))
    return acc


def forecast_category(
    cells: Mapping[Cell, Sequence[float]],
    first_day: int,
    promos: PromotionCalendar = NO_PROMOTIONS,
    cfg: ForecastConfig = ForecastConfig(),
    prior: tuple[float, float] | None = None,
) -> CategoryForecast | None:
    """Forecast the brief rows of one category from its cells' daily demand.

    ``cells``: cell -> demand per local day, index 0 = the date with ordinal
    ``first_day``, every list as long (the last entry is the last complete day).
    ``prior``: the market's growth (``market_growth``). None when the category sold
    nothing."""
    if not cells:
        return None
    n = len(next(iter(cells.values())))
    total = _vsum(cells.values(), n)
    start = _first_positive(total)
    if start is None:
        return None
    prof, mult = _profile(total, first_day, start, promos, cfg)
    w = min(n - start, cfg.level_days)
    window = range(n - w, n)
    # each cell's level: its mean over the window from its first sale. The cells that
    # sold over the whole window ("established") are scaled together to their
    # subtotal's level (which knows a trend or a shift); a newer cell (a launch) keeps its
    # own: all of its window is after its start, and it must not read as a shift
    raw: dict[Cell, float] = {}
    var_unit: dict[Cell, float] = {}
    established: list[Cell] = []
    for cell, ys in cells.items():
        s = _first_positive(ys)
        if s is None:
            continue
        m = min(n - s, cfg.level_days)
        zs = [ys[t] / mult[t] for t in range(n - m, n)]
        if s <= n - w and (k := _shift(zs, cfg)) is not None:
            zs, m, s = zs[k:], m - k, n - m + k  # from its shift on, a newer cell
        mean_z = sum(zs) / m
        raw[cell] = mean_z
        if m >= 7:
            var_z = sum((z - mean_z) ** 2 for z in zs) / (m - 1)
        else:
            var_z = cfg.short_dispersion * max(mean_z, 1.0 / m)
        var_unit[cell] = var_z / m
        if s <= n - w:
            established.append(cell)
    newer = sum(v for c, v in raw.items() if c not in established)
    old = sum(raw[c] for c in established)
    if established:
        sub = [x / mult[t] for t, x in zip(
            window, _vsum([cells[c][n - w:] for c in established], w), strict=True)]
        est_level, g, g_se, level_se, model = _level(sub, cfg, prior)
    else:
        est_level, g, g_se, level_se, model = 0.0, 0.0, 0.0, 0.0, "new"
        if prior is not None:
            g, g_se = prior
    level = est_level + newer
    prof.level, prof.growth, prof.growth_se, prof.level_se, prof.model = (
        level, g, g_se, level_se, model)
    H = cfg.horizon_days
    ahead = [first_day + n - 1 + h for h in range(1, H + 1)]
    m_ahead = [_multiplier(prof, promos, d) for d in ahead]
    estimated = [promos.is_promo(d) and promos.factor(d) is None for d in ahead]
    damped, acc, p = [], 0.0, 1.0
    for _ in range(H):
        p *= cfg.damping
        acc += p
        damped.append(acc)
    scale = est_level / old if old > 0 else 1.0
    cell_level = {c: v * (scale if c in established else 1.0) for c, v in raw.items()}
    grow = [math.exp(g * d) for d in damped]
    cell_mean = {c: [v * grow[h] * m_ahead[h] for h in range(H)] for c, v in cell_level.items()}
    # in-sample fit over the window (for the rows' day-to-day noise)
    cell_fit: dict[Cell, list[float]] = {}
    for c, v in cell_level.items():
        s = _first_positive(cells[c]) or 0
        cell_fit[c] = [v * math.exp(g * (t - (n - 1))) * mult[t] if t >= s else 0.0
                       for t in window]
    rows: dict[Row, list[Cell]] = {("total", ""): list(cell_mean)}
    for cell in cell_mean:
        for dim, value in zip(DIMENSIONS, cell, strict=True):
            rows.setdefault((dim, value), []).append(cell)
    out = CategoryForecast(prof)
    est_set = set(established)
    for row, members in rows.items():
        means = _vsum([cell_mean[c] for c in members], H)
        ys_row = _vsum([cells[c][n - w:] for c in members], w)
        fit_row = _vsum([cell_fit[c] for c in members], w)
        num = sum((y - f) ** 2 for y, f in zip(ys_row, fit_row, strict=True))
        den = sum(fit_row)
        dispersion = (max(num / den, 1.0) if den > 0 and len(ys_row) >= 7
                      else max(cfg.short_dispersion, 1.0))
        row_level = sum(cell_level[c] for c in members)
        share = (sum(cell_level[c] for c in members if c in est_set) / est_level
                 if est_level > 0 else 0.0)
        # the row's level error: the category's (its share of it) and its cells' mix
        level_var = (share * level_se) ** 2 + sum(var_unit[c] for c in members) * (
            1.0 if row != ("total", "") else 0.0)
        cum_mean: list[float] = []
        cum_sd: list[float] = []
        total_m = mult_sum = trend_sum = promo_sum = 0.0
        for h in range(H):
            total_m += means[h]
            mult_sum += m_ahead[h] * grow[h]
            trend_sum += row_level * damped[h] * grow[h] * m_ahead[h]
            if estimated[h]:
                promo_sum += means[h]
            var = (dispersion * total_m + level_var * mult_sum ** 2
                   + (g_se * trend_sum) ** 2 + (cfg.promo_cv * promo_sum) ** 2
                   + (cfg.model_cv * total_m) ** 2)
            cum_mean.append(total_m)
            cum_sd.append(math.sqrt(var))
        out.rows[row] = RowForecast(cum_mean, cum_sd)
    return out


def market_growth(
    total: Sequence[float], first_day: int, promos: PromotionCalendar = NO_PROMOTIONS,
    cfg: ForecastConfig = ForecastConfig(),
) -> tuple[float, float] | None:
    """The whole market's growth per day (log rate) and its standard error, when its
    demand (all categories) shows a trend; None otherwise."""
    start = _first_positive(total)
    if start is None:
        return None
    _, mult = _profile(total, first_day, start, promos, cfg)
    n = len(total)
    w = min(n - start, cfg.level_days)
    _, g, g_se, _, model = _level([total[t] / mult[t] for t in range(n - w, n)], cfg)
    return (g, g_se) if model == "trend" else None


#: (factory, category, colour, size, price band, local day ordinal, demand)
DemandRow = tuple[str, str, str, str, str, int, float]


def brief_forecasts(
    demand: Sequence[DemandRow],
    last_day: int,
    promos: PromotionCalendar = NO_PROMOTIONS,
    cfg: ForecastConfig = ForecastConfig(),
) -> list[tuple[int, str, str, str, str, RowForecast, Profile, list[int]]]:
    """Every brief row's forecast from the daily demand of the ``cfg.history_days`` local
    days up to ``last_day`` (a date ordinal, the last complete day): for all factories
    (factory '') and for each factory alone, with the market's growth (all factories, all
    categories) as the prior. Returns (last_day, factory, category, dimension, value,
    forecast, the category's profile, the promotion days in the horizon)."""
    first_day = last_day - cfg.history_days + 1
    n = cfg.history_days
    groups: dict[tuple[str, str], dict[Cell, list[float]]] = {}
    market = [0.0] * n
    for factory, category, color, size, band, day, x in demand:
        t = day - first_day
        if not 0 <= t < n:
            continue
        cell = (color, size, band)
        for key in ((factory, category), ("", category)):
            groups.setdefault(key, {}).setdefault(cell, [0.0] * n)[t] += x
        market[t] += x
    prior = market_growth(market, first_day, promos, cfg)
    ahead = [d for d in range(last_day + 1, last_day + cfg.horizon_days + 1)
             if promos.is_promo(d)]
    out = []
    for (factory, category), cells in sorted(groups.items()):
        fc = forecast_category(cells, first_day, promos, cfg, prior)
        if fc is None:
            continue
        for (dim, value), rf in sorted(fc.rows.items()):
            out.append((last_day, factory, category, dim, value, rf, fc.profile, ahead))
    return out
