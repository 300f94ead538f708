"""Runs the alert rules for one finished event-time hour and feeds the lifecycle book."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from streams.core.alerting.book import Alert, AlertBook, Finding
from streams.core.alerting.inputs import HOUR, AlertInputs, CumSeries, SignalKey
from streams.core.alerting.restock import RestockConfig, evaluate_restock
from streams.core.alerting.surge import (
    SurgeConfig,
    evaluate_share,
    evaluate_surge,
    long_run_share,
)
from streams.core.calendar import UTC_CALENDAR, MarketCalendar


@dataclass(frozen=True, slots=True)
class AlertConfig:
    restock: RestockConfig = field(default_factory=RestockConfig)
    surge: SurgeConfig = field(default_factory=SurgeConfig)
    cooldown_hours: int = 24

    @property
    def history_days(self) -> int:
        """How many days before an evaluated hour the rules read."""
        return max(self.restock.history_days, self.surge.baseline_days) + 1


class PreparedInputs:
    """``AlertInputs`` indexed once for many hourly evaluations.

    ``first_hour`` is the first hour with data; the rules' history starts an hour later,
    because a stream that began mid-hour leaves its first hour partly observed (a partial
    hour as "the same hour yesterday" would make the next day look like a surge).
    """

    def __init__(self, inputs: AlertInputs, first_hour: int | None = None) -> None:
        self.inputs = inputs
        first = first_hour if first_hour is not None else inputs.first_hour()
        self.first_hour = None if first is None else first + HOUR
        self.series = {k: CumSeries(v) for k, v in inputs.orders.items()}
        self.parents = {c: CumSeries(v) for c, v in inputs.category_orders.items()}
        siblings: dict[tuple[str, str], int] = {}
        for cat, dim, _ in inputs.orders:
            siblings[(cat, dim)] = siblings.get((cat, dim), 0) + 1
        self.siblings = siblings
        self.factories = {c: tuple(inputs.factories_of(c)) for c in inputs.category_orders}


class AlertEvaluator:
    def __init__(
        self, config: AlertConfig | None = None, book: AlertBook | None = None,
        calendar: MarketCalendar = UTC_CALENDAR,
    ) -> None:
        self.config = config or AlertConfig()
        self.book = book if book is not None else AlertBook(self.config.cooldown_hours)
        #: the market's days: "the same hour yesterday" is the same local clock time
        self.calendar = calendar

    def evaluate(self, hour: int, prepared: PreparedInputs) -> list[Alert]:
        """Every alert change for event-time ``hour`` (epoch s, hour start), in key order."""
        first = prepared.first_hour
        if first is None:
            return []
        changes: list[Alert] = []
        for f in [*self._restock(hour, prepared, first), *self._signals(hour, prepared, first)]:
            change = self.book.apply(f, hour)
            if change is not None:
                changes.append(change)
        return changes

    def _restock(self, hour: int, prep: PreparedInputs, first: int) -> list[Finding]:
        cfg = self.config.restock
        out = []
        end = hour + HOUR
        for sku in sorted(prep.inputs.sku_hours):
            product = prep.inputs.products.get(sku)
            if product is None:
                continue
            r = evaluate_restock(
                product, prep.inputs.sku_hours[sku], end, first, cfg, self.calendar
            )
            if r is None:
                continue
            out.append(
                Finding(
                    "restock", (sku,), r.firing, r.clear, r.severity, product.factory_id,
                    (product.factory_id,), product.category, sku, "", "",
                    float(r.on_hand + r.in_transit), round(r.reorder_point, 3),
                    round(r.days_of_cover, 3) if math.isfinite(r.days_of_cover) else -1.0,
                    r.recommended_qty, r.stockout_s,
                    {
                        "on_hand": r.on_hand, "in_transit": r.in_transit,
                        "daily_rate": round(r.daily_rate, 3),
                        "daily_sigma": round(r.daily_sigma, 3),
                        "lead_time_days": product.lead_time_days, "moq": product.moq,
                        "service_level": cfg.service_level, "review_days": cfg.review_days,
                        "color": product.color, "size": product.size,
                        "price_band": product.price_band,
                    },
                    r.downgrade_ok,
                )
            )
        return out

    def _signals(self, hour: int, prep: PreparedInputs, first: int) -> list[Finding]:
        cfg = self.config.surge
        out: list[Finding] = []
        keys: list[SignalKey] = sorted(prep.series)
        for key in keys:
            cat, dim, value = key
            series = prep.series[key]
            parent = prep.parents.get(cat)
            if parent is None:
                continue
            factories = prep.factories.get(cat, ())
            share = long_run_share(
                series, parent, hour, cfg.baseline_days, prep.siblings.get((cat, dim), 1),
                self.calendar,
            )
            s = evaluate_surge(series, parent, share, hour, first, cfg, self.calendar)
            if s is not None:
                out.append(
                    Finding(
                        "surge", key, s.firing, s.clear, s.severity, "", factories, cat, "",
                        dim, value, s.observed, round(s.baseline, 3),
                        round(s.ratio, 3) if math.isfinite(s.ratio) else -1.0,
                        details={"score": round(s.score, 3), "measure": "cell_orders"},
                        downgrade_ok=s.downgrade_ok,
                    )
                )
            r = evaluate_share(series, parent, hour, first, cfg, self.calendar)
            if r is not None:
                out.append(
                    Finding(
                        "rising_share", key, r.firing, r.clear, r.severity, "", factories, cat,
                        "", dim, value, round(r.observed, 5), round(r.baseline, 5),
                        round(r.ratio, 3), details={"score": round(r.score, 3)},
                    )
                )
        return out
