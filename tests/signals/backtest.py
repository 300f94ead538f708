"""Rolling-origin backtest of the brief's forecast on simulator history (issue 20).

Each scenario simulates ``DAYS`` days of a market (60 SKUs over the simulator's
categories). At every origin (days 28, 35, ..., from four weeks of history) the forecast
sees the days before the origin and predicts the next ``HORIZON`` days of every brief
row (category total, colour, size, price band); so do two baselines:

- ``trailing mean``: the brief's former method, the mean of the last 14 days;
- ``seasonal naive``: the last week, repeated.

Reported per scenario and method: WAPE (sum of |daily error| / sum of daily demand over
all rows, origins and days ahead), MASE (mean over rows and origins of the daily MAE over
the in-sample MAE of a one-week seasonal naive; rows without in-sample variation left
out), and for the forecast the empirical coverage of its 95% interval for the horizon's
total. ``python -m tests.signals.backtest`` prints the table in docs/ALERTS.md;
``test_forecast_backtest`` asserts the issue's targets on the same run.

Demand here is computed from the simulator's events independently of the product's
SQL: net units per local (China) day, ordered less cancelled less returned.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import date

from streams.core.forecast import (
    Cell,
    ForecastConfig,
    Row,
    forecast_category,
    market_growth,
)
from streams.core.pricebands import PriceBands
from streams.core.promotions import PromotionCalendar
from streams.sim.model import CST_OFFSET_MS, DAY_MS, ShopSimulator, SimEvent
from streams.sim.scenario import Scenario
from tests.signals.reference import ts_ms


def trailing_mean(values: Sequence[float], days: int = 14) -> float:
    """The brief's former method (the baseline the forecast is compared with): the mean
    of the last ``days`` days."""
    tail = values[-days:]
    return sum(tail) / len(tail) if tail else 0.0


#: 2026-03-02, a Monday, 00:00 China time
START_MS = 1_772_380_800_000
DAYS = 70
HORIZON = 14
ORIGINS = tuple(range(28, DAYS - HORIZON + 1, 7))
FIRST_DAY = date(2026, 3, 2).toordinal()


def _promo_ms(day: int) -> int:
    return START_MS + day * DAY_MS


#: promotion days: every other Saturday-ish, known in advance (the calendar)
PROMO_DAYS = (12, 26, 40, 47, 54, 61, 68)

SCENARIOS: dict[str, Scenario] = {
    "steady": Scenario(stockout_skus=0),
    "trend": Scenario(stockout_skus=0, weekly_growth=0.08),
    "weekly": Scenario(stockout_skus=0, weekday_factors=(0.75, 0.8, 0.9, 1.0, 1.1, 1.35, 1.25)),
    "promotion": Scenario(stockout_skus=0, promo_days=tuple(_promo_ms(d) for d in PROMO_DAYS),
                          promo_day_multiplier=3.0),
    "new product": Scenario(stockout_skus=0, launch_ms=START_MS + 24 * DAY_MS, launch_skus=2,
                            launch_share=0.15, launch_on_hand=100_000),
}


def promotions_of(name: str) -> PromotionCalendar:
    if name != "promotion":
        return PromotionCalendar()
    return PromotionCalendar.parse(",".join(
        date.fromordinal(FIRST_DAY + d).isoformat() for d in PROMO_DAYS))


def daily_cells(events: list[SimEvent], days: int) -> dict[str, dict[Cell, list[float]]]:
    """category -> cell -> net units per local day (index 0 = the first day)."""
    bands = PriceBands()
    products: dict[str, tuple[str, Cell]] = {}
    out: dict[str, dict[Cell, list[float]]] = {}
    for e in events:
        v = e.value
        if v["event_type"] == "product_upsert":
            cell = (v["color"], v["size"], bands.label(v["list_price"]))
            products[v["sku"]] = (v["category"], cell)
            out.setdefault(v["category"], {}).setdefault(cell, [0.0] * days)
    for e in events:
        v = e.value
        kind = v["event_type"]
        if kind in ("order_placed", "order_cancelled"):
            lines = [(ln["sku"], ln["qty"]) for ln in v["lines"]]
        elif kind == "returned":
            lines = [(v["sku"], v["qty"])]
        else:
            continue
        day = (ts_ms(v["ts"]) + CST_OFFSET_MS) // DAY_MS - (START_MS + CST_OFFSET_MS) // DAY_MS
        if not 0 <= day < days:
            continue
        sign = 1 if kind == "order_placed" else -1
        for sku, qty in lines:
            cat, cell = products[sku]
            out[cat][cell][day] += sign * qty
    return out


def rows_of(cells: dict[Cell, list[float]]) -> dict[Row, list[float]]:
    rows: dict[Row, list[float]] = {}
    n = len(next(iter(cells.values())))
    for cell, ys in cells.items():
        for row in (("total", ""), ("color", cell[0]), ("size", cell[1]),
                    ("price_band", cell[2])):
            acc = rows.setdefault(row, [0.0] * n)
            for t, y in enumerate(ys):
                acc[t] += y
    return rows


@dataclass
class Score:
    abs_err: float = 0.0
    actual: float = 0.0
    mase: list[float] = field(default_factory=list)
    covered: int = 0
    intervals: int = 0

    @property
    def wape(self) -> float:
        return self.abs_err / self.actual if self.actual else math.nan

    @property
    def mean_mase(self) -> float:
        return sum(self.mase) / len(self.mase) if self.mase else math.nan

    @property
    def coverage(self) -> float:
        return self.covered / self.intervals if self.intervals else math.nan


def _scale(history: Sequence[float]) -> float | None:
    """In-sample MAE of the one-week seasonal naive, from the row's first sale."""
    start = next((i for i, y in enumerate(history) if y > 0), None)
    if start is None:
        return None
    diffs = [abs(history[t] - history[t - 7]) for t in range(start + 7, len(history))]
    if not diffs or sum(diffs) == 0:
        return None
    return sum(diffs) / len(diffs)


Method = Callable[[Sequence[float]], list[float]]


def _trailing(history: Sequence[float]) -> list[float]:
    return [trailing_mean(history, 14)] * HORIZON


def _seasonal_naive(history: Sequence[float]) -> list[float]:
    week = list(history[-7:])
    return [week[h % 7] for h in range(HORIZON)]


def _add(score: Score, pred: Sequence[float], actual: Sequence[float],
         history: Sequence[float]) -> None:
    err = sum(abs(p - a) for p, a in zip(pred, actual, strict=True))
    score.abs_err += err
    score.actual += sum(actual)
    scale = _scale(history)
    if scale is not None:
        score.mase.append(err / len(actual) / scale)


#: every scenario is run on these seeds, the scores pooled
SEEDS = (11, 5, 12)


DEFAULT = ForecastConfig()


def backtest(name: str, seeds: Sequence[int] = SEEDS, cfg: ForecastConfig = DEFAULT,
             orders_per_hour: int = 60) -> dict[str, Score]:
    scores = {"forecast": Score(), "trailing mean": Score(), "seasonal naive": Score()}
    for seed in seeds:
        _backtest_seed(name, seed, replace(cfg, horizon_days=HORIZON), orders_per_hour, scores)
    return scores


def _backtest_seed(name: str, seed: int, fcfg: ForecastConfig, orders_per_hour: int,
                   scores: dict[str, Score]) -> None:
    sim = ShopSimulator(seed, START_MS, n_skus=60, orders_per_hour=orders_per_hour,
                        scenario=SCENARIOS[name], page_views=False)
    events = sim.catalog() + sim.events(START_MS + DAYS * DAY_MS)
    cats = daily_cells(events, DAYS)
    promos = promotions_of(name)
    market = [sum(ys[t] for cells in cats.values() for ys in cells.values())
              for t in range(DAYS)]
    priors = {o: market_growth(market[:o], FIRST_DAY, promos, fcfg) for o in ORIGINS}
    for cells in cats.values():
        rows = rows_of(cells)
        for origin in ORIGINS:
            hist_cells = {c: ys[:origin] for c, ys in cells.items()}
            fc = forecast_category(hist_cells, FIRST_DAY, promos, fcfg, priors[origin])
            for row, ys in rows.items():
                history, actual = ys[:origin], ys[origin: origin + HORIZON]
                if sum(history) <= 0 and sum(actual) <= 0:
                    continue
                rf = fc.rows.get(row) if fc is not None else None
                daily = ([0.0] * HORIZON if rf is None else
                         [rf.cum_mean[0]] + [rf.cum_mean[h] - rf.cum_mean[h - 1]
                                             for h in range(1, HORIZON)])
                _add(scores["forecast"], daily, actual, history)
                _add(scores["trailing mean"], _trailing(history), actual, history)
                _add(scores["seasonal naive"], _seasonal_naive(history), actual, history)
                if rf is not None:
                    mean, sd = rf.total(HORIZON)
                    lo, hi = max(mean - 1.96 * sd, 0.0), mean + 1.96 * sd
                    s = scores["forecast"]
                    s.intervals += 1
                    s.covered += lo <= sum(actual) <= hi


def main(names: list[str]) -> None:
    print(f"rolling origin: {DAYS} days, origins at days {', '.join(map(str, ORIGINS))}, "
          f"{HORIZON} days ahead, 60 SKUs, 60 orders an hour, seeds "
          f"{', '.join(map(str, SEEDS))} pooled")
    print("| scenario | method | WAPE | MASE | 95% coverage |")
    print("|---|---|---|---|---|")
    for name in names or list(SCENARIOS):
        t0 = time.perf_counter()
        scores = backtest(name)
        for method, s in scores.items():
            cov = f"{s.coverage:.1%}" if s.intervals else "-"
            print(f"| {name} | {method} | {s.wape:.3f} | {s.mean_mase:.3f} | {cov} |")
        print(f"<!-- {name}: {time.perf_counter() - t0:.1f} s -->", file=sys.stderr)


if __name__ == "__main__":
    main(sys.argv[1:])
