"""The alert service: evaluates finished event-time hours and publishes what changed.

A ``mode.Service`` attached to the Faust app of the process that owns ClickHouse
(``streams.app.attach_alerts``); an ``@app.timer`` calls ``catch_up`` every
``alert_interval_seconds`` while the service runs, and stopping the service waits for
an evaluation in progress (publish, then store) to end. Each evaluation:

1. read the event-time watermark of every source partition (``c2m.checkpoints``) and
   take the alert watermark (``streams.core.alerting.progress``: stricter than the
   demand views' idle rule, so a replay sees the same complete hours). An hour is
   *finished* when the watermark is past its end; hours are evaluated in order, each
   exactly once;
2. load the rules' inputs for the pending hours plus their history from ClickHouse
   (``sku_hourly``, ``products_current``, hourly ``demand_state``) and run the pure
   evaluator (``streams.core.alerting``) hour by hour;
3. for each hour: publish its alert changes, restock alerts to their factory's own topic
   ``factory.<factory>.restock-alerts`` (created on its first alert; key SKU) and market
   signals to ``factory.demand-signals`` (key category), and wait for the acks, then
   write them to ``c2m.alert_history`` and ``c2m.alerts``, then mark the hour done in
   ``c2m.alert_progress``.

A crash between 3's publish and its writes re-evaluates the hour after the restart and
publishes the same (alert_id, version) messages again: at-least-once, never a new id.
A failed write reloads the book from ClickHouse before the next try, so memory never
runs ahead of what is stored.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime
from typing import Any

from mode import Service

from schemas.alerts import (
    TOPIC_DEMAND_SIGNALS,
    TOPIC_RESTOCK_ALERTS,
    AlertMessage,
    LostSalesDetails,
    RestockDetails,
    SignalDetails,
)
from streams import metrics
from streams.clickhouse.alerts import AlertStore
from streams.core.alerting.book import Alert
from streams.core.alerting.evaluator import AlertConfig, AlertEvaluator, PreparedInputs
from streams.core.alerting.inputs import DAY, HOUR, InputCache, settled_before
from streams.core.alerting.progress import alert_watermark
from streams.core.calendar import UTC_CALENDAR, MarketCalendar
from streams.core.forecast import ForecastConfig, brief_forecasts
from streams.core.promotions import NO_PROMOTIONS, PromotionCalendar
from streams.core.tenancy import restock_topic
from streams.errors import BrokerError, SinkError

log = logging.getLogger(__name__)

#: Sends (topic, key, value); returns an awaitable that completes on delivery.
Publisher = Callable[[str, bytes, bytes], Awaitable[Awaitable[Any]]]
IO = Callable[..., Awaitable[Any]]

_DIM_ZH = {"color": "颜色", "size": "尺码", "price_band": "价格带"}
_STATE_ZH = {"open": "新", "updated": "更新", "resolved": "已解除"}


def _iso(s: int | None) -> str | None:
    return None if s is None else datetime.fromtimestamp(s, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _local(cal: MarketCalendar, s: int, fmt: str) -> str:
    """Local time for a summary, with the zone: '2026-11-11 00:00 CST'."""
    return f"{cal.format(s, fmt)} {cal.abbreviation(s)}"


def to_message(a: Alert, cal: MarketCalendar = UTC_CALENDAR) -> AlertMessage:
    """The published form of one alert version, with Chinese and English summaries. Times
    in the summaries are the market's local time with its zone; the message fields stay
    RFC 3339 in UTC."""
    d = a.details
    restock = signal = lost = None
    when = _iso(a.window_start) or ""
    hour_local = _local(cal, a.window_start, "%Y-%m-%d %H:%M")
    if a.kind == "restock":
        stockout = _iso(a.stockout_s)
        cover = a.score if a.score >= 0 else None
        restock = RestockDetails(
            on_hand=d["on_hand"], in_transit=d["in_transit"], daily_rate=d["daily_rate"],
            daily_sigma=d["daily_sigma"], lead_time_days=d["lead_time_days"], moq=d["moq"],
            service_level=d["service_level"], review_days=d["review_days"],
            reorder_point=a.expected, recommended_qty=a.recommended_qty, days_of_cover=cover,
            projected_stockout=stockout, color=d["color"], size=d["size"],
            price_band=d["price_band"],
        )
        day = "-" if a.stockout_s is None else _local(cal, a.stockout_s, "%Y-%m-%d")
        what = f"{a.category}/{d['color']}/{d['size']}"
        zh = (
            f"[{_STATE_ZH[a.state]}] 补货提醒 {a.sku}（{what}）：现货 {d['on_hand']} 件，"
            f"在途 {d['in_transit']} 件，日均净需求 {d['daily_rate']:.1f} 件，预计 {day} 断货；"
            f"建议补货 {a.recommended_qty} 件（起订量 {d['moq']}，交期 {d['lead_time_days']} 天）"
        )
        en = (
            f"[{a.state}] Restock {a.sku} ({what}): {d['on_hand']} on hand, "
            f"{d['in_transit']} in transit, {d['daily_rate']:.1f}/day net demand, stockout "
            f"{day}; order {a.recommended_qty} (MOQ {d['moq']}, lead time "
            f"{d['lead_time_days']} d)"
        )
    elif a.kind == "lost_sales":
        lost = LostSalesDetails(
            lost_units=d["lost_units"], lost_gmv=d["lost_gmv"], sold_units=int(d["sold_units"]),
            lost_share=a.score, method=d["method"],
        )
        what = f"{a.category} {_DIM_ZH.get(a.dimension, a.dimension)}={a.value}"
        zh = (
            f"[{_STATE_ZH[a.state]}] 缺货损失 {what}：截至 {hour_local} 的一天里，缺货少卖约 "
            f"{d['lost_units']:.0f} 件（约 {d['lost_gmv']:.0f} 元，占需求 {a.score:.0%}）"
        )
        en = (
            f"[{a.state}] Lost sales {a.category} {a.dimension}={a.value}: about "
            f"{d['lost_units']:.0f} units (CNY {d['lost_gmv']:.0f}, {a.score:.0%} of demand) "
            f"not sold for lack of stock in the day to {hour_local}"
        )
    else:
        ratio = a.score if a.score >= 0 else math.inf
        signal = SignalDetails(
            observed=a.observed, baseline=a.expected,
            ratio=a.score, score=float(d.get("score", 0.0)),
        )
        what = f"{a.category} {_DIM_ZH.get(a.dimension, a.dimension)}={a.value}"
        if a.kind == "surge":
            zh = (
                f"[{_STATE_ZH[a.state]}] 需求激增 {what}：{hour_local} 这一小时 "
                f"{a.observed:.0f} 单，基线 {a.expected:.1f}（{ratio:.1f} 倍）"
            )
            en = (
                f"[{a.state}] Demand surge {a.category} {a.dimension}={a.value}: "
                f"{a.observed:.0f} orders in the hour from {hour_local}, baseline {a.expected:.1f} "
                f"({ratio:.1f}x)"
            )
        else:
            zh = (
                f"[{_STATE_ZH[a.state]}] 份额上升 {what}：近24小时占品类 {a.observed:.1%}，"
                f"此前 {a.expected:.1%}"
            )
            en = (
                f"[{a.state}] Rising share {a.category} {a.dimension}={a.value}: "
                f"{a.observed:.1%} of the category's orders in the last 24 h, "
                f"{a.expected:.1%} before"
            )
    return AlertMessage(
        alert_id=a.alert_id, version=a.version, kind=a.kind,
        state=a.state, severity=a.severity,
        factory_id=a.factory_id or None, factories=list(a.factories), category=a.category,
        sku=a.sku or None, dimension=a.dimension or None,
        value=a.value or None, window_start=when, opened_at=_iso(a.opened_at) or "",
        changed_at=_iso(a.changed_at) or "", restock=restock, signal=signal,
        lost_sales=lost, summary_zh=zh, summary_en=en,
    )


def destinations(a: Alert, shared_restock: bool = False) -> list[tuple[str, bytes]]:
    """(topic, key) pairs one alert version is published to: a restock alert to its
    factory's own topic (key: the SKU), and with ``shared_restock`` also to the shared
    ``factory.restock-alerts`` (key: factory id, as before per-factory topics); a market
    signal to ``factory.demand-signals`` (key: category)."""
    if a.kind == "restock":
        out = [(restock_topic(a.factory_id), a.sku.encode())]
        if shared_restock:
            out.append((TOPIC_RESTOCK_ALERTS, a.factory_id.encode()))
        return out
    return [(TOPIC_DEMAND_SIGNALS, a.category.encode())]


class AlertService(Service):
    def __init__(
        self,
        store: AlertStore,
        publish: Publisher,
        io: IO,
        config: AlertConfig | None = None,
        max_hours_per_tick: int = 48,
        expected_partitions: Callable[[], set[tuple[str, int]]] = set,
        idle_ms: int = 900_000,
        idle_wall_s: float = 60.0,
        leader: Callable[[], bool] | None = None,
        calendar: MarketCalendar = UTC_CALENDAR,
        factory_topic: Callable[[str], Awaitable[Any]] | None = None,
        shared_restock: bool = False,
        promotions: PromotionCalendar = NO_PROMOTIONS,
        forecast: ForecastConfig | None = None,
        ready: asyncio.Event | None = None,
        evaluate_at_start: bool = False,
        settled_horizon_s: int | None = None,
        resolved_keep_s: int | None = None,
    ) -> None:
        super().__init__()
        #: how long (event time) a resolved alert stays in ``c2m.alerts`` after the hour
        #: that resolved it (``AlertStore.prune_resolved``, at most once a day); None: kept.
        #: At least the cooldown: a restart's ``restore`` reads the resolved alerts still
        #: cooling down (``AlertBook.restore_bound``)
        self.resolved_keep_s = resolved_keep_s
        self._pruned_before: int | None = None
        #: the engine's correction horizon: hours older than every partition's watermark
        #: minus this are final, so the inputs of the last evaluation are kept and only
        #: newer hours read again (``InputCache``); None: read the whole history each time
        self.settled_horizon_s = settled_horizon_s
        self._inputs = InputCache()
        #: evaluation waits until this is set (the worker: its catalog read to its end)
        self.ready = ready
        #: evaluate once as soon as the service has started (and ``ready``), not only at
        #: the app's timer, whose first call comes one interval after the start
        self.evaluate_at_start = evaluate_at_start
        self.store = store
        #: called with a factory id before its restock alerts are published (creates the
        #: factory's topic on its first alert: streams.kafka.topics.FactoryTopics)
        self.factory_topic = factory_topic
        self.shared_restock = shared_restock
        #: the market's days and hours (rules and summaries)
        self.calendar = calendar
        self.promotions = promotions
        #: the brief's forecast, refreshed once a local day (None: never)
        self.forecast = forecast
        self.forecast_day: int | None = None
        self.publish = publish
        self.io = io
        self.config = config or AlertConfig()
        self.max_hours_per_tick = max_hours_per_tick
        self.evaluator = AlertEvaluator(self.config, calendar=calendar, promotions=promotions)
        self.last_hour: int | None = None
        self._loaded = False
        self.hours_evaluated = 0
        self.expected_partitions = expected_partitions
        self.idle_ms = idle_ms
        self.idle_wall_s = idle_wall_s
        #: when this service was made (the idle-partition wall clock counts from it)
        self._created = time.monotonic()
        #: held while hours are evaluated; stopping the service waits for it
        self._evaluating = asyncio.Lock()
        #: None: always evaluate (the alerter, the writer); else evaluate only while it
        #: answers True (workers: the owner of the leader partition, see streams.app)
        self.leader = leader

    @property
    def leading(self) -> bool:
        return self.leader is None or self.leader()

    async def _reload(self) -> None:
        self._inputs.clear()
        self.last_hour = await self.io(self.store.last_evaluated)
        # the next hour evaluated is the one after it (_evaluate): resolved alerts whose
        # cooldown ended before it are not read
        book = self.evaluator.book
        bound = None if self.last_hour is None else book.restore_bound(self.last_hour + HOUR)
        book.restore(await self.io(self.store.current_alerts, bound))
        self._loaded = True

    async def tick(self) -> int:
        """Evaluate the finished hours not done yet (up to a chunk). Returns how many."""
        try:
            return await self._tick()
        except (SinkError, BrokerError) as exc:
            log.warning("alert evaluation deferred: %s", exc)
            self._loaded = False
            return 0

    async def _tick(self) -> int:
        if not self.leading:
            # another worker evaluates meanwhile: take the book and progress from the
            # store again when the lead comes back
            self._loaded = False
            return 0
        if not self._loaded:
            await self._reload()
        progress = await self.io(self.store.partition_progress)
        wm = alert_watermark(
            progress, self.expected_partitions(), idle_ms=self.idle_ms,
            idle_wall_s=self.idle_wall_s, uptime_s=time.monotonic() - self._created,
        )
        if wm is None:
            return 0
        done_until = self.calendar.hour(wm // 1000)  # hours ending at or before this are finished
        marks = {tp: p.watermark_ms for tp, p in progress.items()}
        n = await self._evaluate(done_until, marks)
        await self._refresh_forecast(done_until)
        await self._prune_resolved()
        return n

    async def _prune_resolved(self) -> None:
        """Resolved alerts older than ``resolved_keep_s`` leave ``c2m.alerts``, so that
        what reads the current alerts (the web view, ``/api/alerts``, Grafana, a restart's
        book) reads the open and recent ones, not every alert ever raised. The bound moves
        a day at a time (whole UTC days of event time): one delete a day."""
        if self.resolved_keep_s is None or self.last_hour is None:
            return
        bound = self.last_hour + HOUR - self.resolved_keep_s
        bound -= bound % DAY
        if self._pruned_before is not None and bound <= self._pruned_before:
            return
        n = await self.io(self.store.prune_resolved, bound)
        self._pruned_before = bound
        if n:
            log.info("%d alerts resolved before %s left c2m.alerts (c2m.alert_history "
                     "keeps them)", n, _iso(bound))

    async def _refresh_forecast(self, done_until: int) -> None:
        """Once a local day: the brief's forecast from the days complete by
        ``done_until`` (a day is complete when its last hour is finished)."""
        if self.forecast is None:
            return
        last_day = self.calendar.local_date(done_until).toordinal() - 1
        if self.forecast_day is None:
            self.forecast_day = await self.io(self.store.forecast_as_of)
        if self.forecast_day is not None and self.forecast_day >= last_day:
            return
        first = await self.io(self.store.first_hour)
        if first is None or self.calendar.local_date(first).toordinal() > last_day:
            return  # not a complete day yet
        cfg = self.forecast
        started = time.perf_counter()
        demand = await self.io(
            self.store.daily_demand, date.fromordinal(last_day - cfg.history_days + 1),
            date.fromordinal(last_day), self.calendar.timezone,
        )
        rows = brief_forecasts(demand, last_day, self.promotions, cfg)
        day = date.fromordinal(last_day)
        await self.io(self.store.write_forecast, [
            (day, factory, category, dim, value, [round(x, 2) for x in rf.cum_mean],
             [round(x, 2) for x in rf.cum_sd], prof.model, prof.growth,
             min(prof.history_days, 65_535), [date.fromordinal(d) for d in promo])
            for _, factory, category, dim, value, rf, prof, promo in rows
        ])
        self.forecast_day = last_day
        metrics.FORECAST_SECONDS.observe(time.perf_counter() - started)
        log.info("brief forecast up to %s: %d rows in %.1f s", day.isoformat(), len(rows),
                 time.perf_counter() - started)

    async def _evaluate(
        self, done_until: int, marks: dict[tuple[str, int], int] | None = None
    ) -> int:
        first = await self.io(self.store.first_hour)
        if first is None:
            return 0
        nxt = first if self.last_hour is None else self.last_hour + HOUR
        hours = list(range(nxt, done_until, HOUR))[: self.max_hours_per_tick]
        if not hours:
            return 0
        lo = hours[0] - self.config.history_days * DAY
        max_lead = await self.io(self.store.max_lead_time_days)
        transit_s = math.ceil(self.config.restock.transit_days(max_lead) * DAY)
        hi, movements_from = hours[-1] + HOUR, hours[0] + HOUR - transit_s
        marks = marks or {}
        settled = None if self.settled_horizon_s is None else settled_before(
            marks, self.expected_partitions(), self.settled_horizon_s)
        start = self._inputs.plan(lo, hi, movements_from, settled, marks)
        # which kept hours changed since they were read: the checkpoints written since
        # (read before the inputs, so a refresh landing in between is read now and again)
        changes = None
        if start is not None:
            changes = await self.io(self.store.changed_hours, self._inputs.seen)
        also: list[int] = []
        if start is not None and changes is not None:
            seen, changed = changes
            start, also = self._inputs.partial(start, changed)
        else:  # not knowable what changed (a seen checkpoint gone...): the whole span
            start = None
            seen = await self.io(self.store.checkpoint_positions)
        if start is None:
            loaded = await self.io(self.store.load_inputs, lo, hi, movements_from)
        else:
            loaded = await self.io(self.store.load_inputs, start, hi, None, also)
        inputs = self._inputs.take(lo, hi, movements_from, start, loaded, marks, settled,
                                   also, seen)
        prep = PreparedInputs(inputs, first)
        for hour in hours:
            changes = self.evaluator.evaluate(hour, prep)
            out: list[tuple[Alert, str]] = []
            deliveries = []
            for a in changes:
                msg = to_message(a, self.calendar).model_dump_json()
                if a.kind == "restock" and self.factory_topic is not None:
                    await self.factory_topic(a.factory_id)
                for topic, key in destinations(a, self.shared_restock):
                    deliveries.append(await self.publish(topic, key, msg.encode()))
                out.append((a, msg))
            for d in deliveries:
                await d
            lost = [
                (sku, p.factory_id, p.category, p.color, p.size, p.price_band,
                 round(units, 3), round(orders, 3), round(units * p.list_price, 2))
                for sku, by_hour in sorted(prep.lost.items())
                if (units_orders := by_hour.get(hour)) is not None
                and (p := prep.inputs.products.get(sku)) is not None
                for units, orders in (units_orders,)
            ]
            try:
                await self.io(self.store.write, out, hour, lost)
            except SinkError:
                self._loaded = False  # the book ran ahead of the store: reload first
                raise
            for a in changes:
                metrics.ALERTS.labels(a.kind, a.severity, a.state).inc()
            self.last_hour = hour
            self.hours_evaluated += 1
            metrics.ALERT_HOURS.inc()
        return len(hours)

    @property
    def running(self) -> bool:
        """Started (with the app) and not stopping."""
        return bool(self._started.is_set()) and not self.should_stop

    async def catch_up(self) -> None:
        """Evaluate every finished hour not done yet, chunk after chunk (a chunk of
        ``max_hours_per_tick`` means more may be waiting), while the service runs; nothing
        before ``ready``."""
        if self.ready is not None and not self.ready.is_set():
            return
        async with self._evaluating:
            while self.running and await self.tick() >= self.max_hours_per_tick:
                pass

    async def on_started(self) -> None:
        if self.evaluate_at_start:
            self.add_future(self._first_evaluation())

    async def _first_evaluation(self) -> None:
        if self.ready is not None:
            await self.ready.wait()
        await self.catch_up()

    async def on_stop(self) -> None:
        """Let an evaluation in progress publish and store its hour (the producer and
        ClickHouse are stopped after this service); ``running`` is False from now on, so
        it ends after the hour it is in."""
        async with self._evaluating:
            pass
