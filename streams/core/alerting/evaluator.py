"""Runs the alert rules for one finished event-time hour and feeds the lifecycle book."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from streams.core.alerting.book import Alert, AlertBook, Finding
from streams.core.alerting.inputs import (
    CANCELLED,
    DIMENSIONS,
    HOUR,
    UNITS,
    AlertInputs,
    CumSeries,
    ShopSeries,
    SignalKey,
)
from streams.core.alerting.restock import RestockConfig, evaluate_restock
from streams.core.alerting.stock import CategoryConversion, SkuSeries
from streams.core.alerting.surge import (
    SurgeConfig,
    evaluate_share,
    evaluate_surge,
    long_run_share,
    promotion_lift,
)
from streams.core.calendar import UTC_CALENDAR, MarketCalendar
from streams.core.promotions import NO_PROMOTIONS, PromotionCalendar


@dataclass(frozen=True, slots=True)
class AlertConfig:
    restock: RestockConfig = field(default_factory=RestockConfig)
    surge: SurgeConfig = field(default_factory=SurgeConfig)
    cooldown_hours: int = 24
    #: lost sales of a key over a local day: at least this many units and this share of
    #: its demand (sold + lost) to fire; critical at lost_critical_share
    lost_min_units: float = 20.0
    lost_min_share: float = 0.10
    lost_critical_share: float = 0.5
    #: k (C2M_MIN_SHOPS_PER_SIGNAL): a market signal changes (opens, updates, resolves)
    #: only in an hour whose numbers come from at least this many shops: the key's orders
    #: in the hour and in its baseline (surge), in the day and the days before (rising
    #: share), the listing shops of its SKUs that lost sales (lost sales). 0: no rule (the
    #: pure tests of the rules' arithmetic); the worker passes the setting (default 3)
    min_shops: int = 0

    @property
    def history_days(self) -> int:
        """How many days before an evaluated hour the rules read."""
        return max(self.restock.history_days, self.surge.baseline_days) + 1


class PreparedInputs:
    """``AlertInputs`` indexed once for many hourly evaluations.

    ``first_hour`` is the first hour with data + 1: the demand signals' history starts
    there, because a stream that began mid-hour leaves its first hour partly observed (a
    partial hour as "the same hour yesterday" would make the next day look like a surge).
    The restock rule judges from ``data_first`` (the first hour itself: a new product that
    sells out must be flagged at the end of its first hour).

    Stockouts (``streams.core.alerting.stock``): every SKU's hours are indexed once
    (``skus``); the orders its out-of-stock hours lost are added to the cell-order series
    of its colour, size, price band and category, so the signals do not read a stockout as
    falling demand, nor the SKU's return as a surge. ``lost`` keeps, per SKU and hour, the
    units and orders lost (the lost-sales signal and ``c2m.lost_sales``).
    """

    def __init__(self, inputs: AlertInputs, first_hour: int | None = None,
                 end_s: int | None = None) -> None:
        self.inputs = inputs
        first = first_hour if first_hour is not None else inputs.first_hour()
        self.data_first = first
        self.first_hour = None if first is None else first + HOUR
        last = max((h for hs in inputs.sku_hours.values() for h in hs), default=first or 0)
        end = end_s if end_s is not None else last + HOUR
        self.skus = {sku: SkuSeries.build(hs, end) for sku, hs in inputs.sku_hours.items()}
        self.lost: dict[str, dict[int, tuple[float, float]]] = {}
        orders: dict[SignalKey, dict[int, float]] = {
            k: dict(v) for k, v in inputs.orders.items()}
        cats: dict[str, dict[int, float]] = {
            k: dict(v) for k, v in inputs.category_orders.items()}
        by_cat: dict[str, list[SkuSeries]] = {}
        for sku, series in self.skus.items():
            product = inputs.products.get(sku)
            if product is not None:
                by_cat.setdefault(product.category, []).append(series)
        priors: dict[str, CategoryConversion] = {}
        for sku, series in self.skus.items():
            product = inputs.products.get(sku)
            if product is None or not series.oos:
                continue
            prior = priors.get(product.category)
            if prior is None:
                prior = priors[product.category] = CategoryConversion(by_cat[product.category])
            lost = series.lost_hourly(series.first, end, prior)
            if not lost:
                continue
            self.lost[sku] = lost
            for dim in DIMENSIONS:
                key = (product.category, dim, product.value(dim))
                target = orders.setdefault(key, {})
                for h, (_, lost_orders) in lost.items():
                    target[h] = target.get(h, 0) + lost_orders
            target = cats.setdefault(product.category, {})
            for h, (_, lost_orders) in lost.items():
                target[h] = target.get(h, 0) + lost_orders
        self.series = {k: CumSeries(v) for k, v in orders.items()}
        #: who each key's orders came from, per hour (the k-shop rule of market signals)
        self.order_shops = {k: ShopSeries(v) for k, v in inputs.order_shops.items()}
        self.parents = {c: CumSeries(v) for c, v in cats.items()}
        market: dict[int, float] = {}
        for v in cats.values():
            for h, x in v.items():
                market[h] = market.get(h, 0) + x
        #: orders of the whole market per hour (a promotion's lift)
        self.market = CumSeries(market)
        siblings: dict[tuple[str, str], int] = {}
        for cat, dim, _ in orders:
            siblings[(cat, dim)] = siblings.get((cat, dim), 0) + 1
        self.siblings = siblings
        # lost units and GMV per (category, dimension, value), hourly
        self.lost_by_key: dict[SignalKey, CumSeries] = {}
        self.units_by_key: dict[SignalKey, CumSeries] = {}
        lost_keyed: dict[SignalKey, dict[int, float]] = {}
        gmv_keyed: dict[SignalKey, dict[int, float]] = {}
        units_keyed: dict[SignalKey, dict[int, float]] = {}
        for sku, lost in self.lost.items():
            product = inputs.products[sku]
            for dim in DIMENSIONS:
                key = (product.category, dim, product.value(dim))
                lu = lost_keyed.setdefault(key, {})
                lg = gmv_keyed.setdefault(key, {})
                for h, (lost_units, _) in lost.items():
                    lu[h] = lu.get(h, 0.0) + lost_units
                    lg[h] = lg.get(h, 0.0) + lost_units * product.list_price
        for key in lost_keyed:
            cat, dim, value = key
            sold: dict[int, float] = {}
            for sku, hs in inputs.sku_hours.items():
                p = inputs.products.get(sku)
                if p is None or p.category != cat or p.value(dim) != value:
                    continue
                for h, b in hs.items():
                    sold[h] = sold.get(h, 0.0) + b[UNITS] - b[CANCELLED]
            units_keyed[key] = sold
        self.lost_by_key = {k: CumSeries(v) for k, v in lost_keyed.items()}
        self.lost_gmv_by_key = {k: CumSeries(v) for k, v in gmv_keyed.items()}
        self.units_by_key = {k: CumSeries(v) for k, v in units_keyed.items()}


class AlertEvaluator:
    def __init__(
        self, config: AlertConfig | None = None, book: AlertBook | None = None,
        calendar: MarketCalendar = UTC_CALENDAR,
        promotions: PromotionCalendar = NO_PROMOTIONS,
    ) -> None:
        self.config = config or AlertConfig()
        self.book = book if book is not None else AlertBook(self.config.cooldown_hours)
        #: the market's days: "the same hour yesterday" is the same local clock time
        self.calendar = calendar
        #: known promotion days: left out of surge baselines, their lift expected
        self.promotions = promotions

    def evaluate(self, hour: int, prepared: PreparedInputs) -> list[Alert]:
        """Every alert change for event-time ``hour`` (epoch s, hour start), in key order."""
        first = prepared.first_hour
        if first is None or prepared.data_first is None:
            return []
        changes: list[Alert] = []
        signals = self._signals(hour, prepared, first) if hour >= first else []
        for f in [*self._restock(hour, prepared, prepared.data_first), *signals,
                  *self._lost(hour, prepared)]:
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
            r = evaluate_restock(product, prep.skus[sku], end, first, cfg, self.calendar)
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
                        "observed_hours": r.observed_hours,
                    },
                    r.downgrade_ok,
                )
            )
        return out

    def _lost(self, hour: int, prep: PreparedInputs) -> list[Finding]:
        """Lost sales per (category, dimension, value): units the SKUs of the key could not
        sell while out of stock over the local day ending with ``hour`` (``stock``)."""
        cfg = self.config
        out: list[Finding] = []
        hi = hour + HOUR
        lo = self.calendar.same_hour_days_back(hi, 1)
        for key in sorted(prep.lost_by_key):
            cat, dim, value = key
            lost = prep.lost_by_key[key].sum(lo, hi)
            sold = max(prep.units_by_key[key].sum(lo, hi), 0)
            demand = sold + lost
            if demand <= 0:
                continue
            share = lost / demand
            firing = lost >= cfg.lost_min_units and share >= cfg.lost_min_share
            clear = lost < cfg.lost_min_units / 4 or share < cfg.lost_min_share / 2
            if not (firing or clear or (prep.lost_by_key[key].sum(lo - 86_400, hi) > 0)):
                continue
            if not self._lost_from_enough_shops(prep, key, lo, hi, sold):
                continue
            gmv = prep.lost_gmv_by_key[key].sum(lo, hi)
            out.append(
                Finding(
                    "lost_sales", key, firing, clear,
                    "critical" if share >= cfg.lost_critical_share else "warning", "",
                    (), cat, "", dim, value, round(lost, 1),
                    round(demand, 1), round(share, 4),
                    details={"lost_units": round(lost, 1), "lost_gmv": round(gmv, 2),
                             "sold_units": sold, "method": "page views x in-stock "
                             "conversion in out-of-stock hours, over the local day"},
                    downgrade_ok=share < cfg.lost_critical_share * 0.8,
                )
            )
        return out

    def _enough(self, n: int) -> bool:
        return n >= self.config.min_shops

    def _lost_from_enough_shops(
        self, prep: PreparedInputs, key: SignalKey, lo: int, hi: int, sold: float
    ) -> bool:
        """The k-shop rule of a lost-sales signal: the listing shops of the key's SKUs that
        lost sales in [lo, hi), and the shops whose orders make its sold units."""
        if self.config.min_shops <= 0:
            return True
        cat, dim, value = key
        shops = set()
        for sku, lost in prep.lost.items():
            p = prep.inputs.products.get(sku)
            if p is None or p.category != cat or p.value(dim) != value:
                continue
            if any(lo <= h < hi and units > 0 for h, (units, _) in lost.items()):
                shops.add(p.shop_id)
        if not self._enough(len(shops - {""})):
            return False
        series = prep.order_shops.get(key)
        return sold <= 0 or (series is not None and self._enough(series.count(lo, hi)))

    def _surge_from_enough_shops(
        self, prep: PreparedInputs, key: SignalKey, hour: int, first: int
    ) -> bool:
        """The k-shop rule of a surge: the key's orders in the hour, and in the same hour
        of the baseline days."""
        if self.config.min_shops <= 0:
            return True
        series = prep.order_shops.get(key)
        if series is None or not self._enough(series.count(hour, hour + HOUR)):
            return False
        days = self.config.surge.baseline_days
        back = [t for d in range(1, days + 1)
                if (t := self.calendar.same_hour_days_back(hour, d)) >= first]
        return not back or self._enough(series.count_at(back))

    def _share_from_enough_shops(
        self, prep: PreparedInputs, key: SignalKey, hour: int, first: int
    ) -> bool:
        """The k-shop rule of a rising share: the key's orders over the local day ending
        with the hour, and over the days before (the rule's two windows)."""
        if self.config.min_shops <= 0:
            return True
        series = prep.order_shops.get(key)
        if series is None:
            return False
        now_lo = self.calendar.same_hour_days_back(hour + HOUR, 1)
        base_lo = max(self.calendar.same_hour_days_back(
            hour + HOUR, self.config.surge.baseline_days), first)
        return (self._enough(series.count(now_lo, hour + HOUR))
                and self._enough(series.count(base_lo, now_lo)))

    def _signals(self, hour: int, prep: PreparedInputs, first: int) -> list[Finding]:
        cfg = self.config.surge
        out: list[Finding] = []
        keys: list[SignalKey] = sorted(prep.series)
        lift = promotion_lift(prep.market, hour, first, cfg, self.calendar, self.promotions)
        for key in keys:
            cat, dim, value = key
            series = prep.series[key]
            parent = prep.parents.get(cat)
            if parent is None:
                continue
            # market signals name no factory (docs/SECURITY.md): who makes a category is
            # each factory's own business
            factories: tuple[str, ...] = ()
            share = long_run_share(
                series, parent, hour, cfg.baseline_days, prep.siblings.get((cat, dim), 1),
                self.calendar,
            )
            s = evaluate_surge(series, parent, share, hour, first, cfg, self.calendar,
                               self.promotions, lift)
            if s is not None and self._surge_from_enough_shops(prep, key, hour, first):
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
            if r is not None and self._share_from_enough_shops(prep, key, hour, first):
                out.append(
                    Finding(
                        "rising_share", key, r.firing, r.clear, r.severity, "", factories, cat,
                        "", dim, value, round(r.observed, 5), round(r.baseline, 5),
                        round(r.ratio, 3), details={"score": round(r.score, 3)},
                    )
                )
        return out
