"""``python -m bench.read``: the read path. Every ClickHouse query a user can trigger, timed
on D days of history, and the bytes each table holds per million events.

    python -m bench.read                      # D = 1, 7 and 30 at 1,000,000 events a day
    python -m bench.read --days 1 --events-per-day 20000 --repeats 2   # what CI runs

For each D, in a child process (chDB opens one engine path per process):

1. build D days of simulated history ending at the current hour (so retention keeps it):
   the seeded simulator with a realistic catalog (--skus 4000, --shops 100, --regions 30),
   keyed into 4 partitions per topic as a producer would, applied by the real engine and
   written by the real store (``DemandStore.write``: state rows, serving tables,
   checkpoints), a flush every --flush-events events, the market fold of the windows
   it refreshed every 4 simulated hours and the periodic one at the end (not through
   Kafka: the write path has its own benchmark, ``python -m bench``). Then the real
   alert service evaluates
   every finished hour (alerts and progress as a worker stores them). The database is
   cached under --workdir by its parameters and reused by later runs;
2. wait for ClickHouse's background merges to settle, then run every query --repeats
   times and print p50 and p95 (ms): every ClickHouse panel of both Grafana dashboards
   (template variables and the plugin's macros expanded as the plugin does) for the last
   6 h, 24 h, 7 d and 30 d and two variable settings, the dashboard's category variable,
   every ``/api/view/*`` call the web page makes (and their sum: the page), ``/api/alerts``,
   ``/api/brief`` and ``c2m brief`` (one query, ``AlertStore.brief``),
   ``c2m.production_brief`` as a plain SELECT, the alert service's input load for one hour,
   a plain SELECT of one local day of ``demand_by_attribute``, the demo's live table, and
   the market views (``market_demand``, ``market_rolling``: the stored fold of cells of
   fewer than k shops) against the same sums over every cell;
3. print the compressed bytes of every table per million events.

With several D the report gives two ratios of each query's p95 at the largest D: to the
smallest D (issue 17's criterion), and to the smallest D that holds all of the range the
query reads (its span: the dashboard range, the view's horizon, the brief's days, the
alert rules' 15 days, the forecast's 56). The first also counts the data in range that a
one-day history does not have; the second is what the history outside the range costs.
``--rounds N`` times every D N times, D after D, and reports the medians: the machine's
speed drifts by tens of percent within a run, and rounds spread that over every D.

Results go to bench/RESULTS.md by hand, with the date and commit. Not a timed test: CI
runs it once at a tiny size (tests/integration/test_bench_smoke.py).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import date, datetime
from pathlib import Path
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

from bench.grafana import expand
from bench.records import Keyed

ROOT = Path(__file__).resolve().parents[1]
DASHBOARDS = sorted((ROOT / "deploy/grafana/dashboards").glob("*.json"))
RANGES = {"6h": (6 * 3600, 20), "24h": (86_400, 60), "7d": (7 * 86_400, 600),
          "30d": (30 * 86_400, 1800)}  # range, Grafana's auto interval for ~1,000 points
PARTITIONS = 4
#: simulated events per order at the default mix (page views, logistics, stock counts)
EVENTS_PER_ORDER_HOUR = 536


def grafana_queries() -> list[tuple[str, str, str]]:
    """(dashboard, panel title, raw SQL) of every ClickHouse panel, plus the variables."""
    out = []
    for path in DASHBOARDS:
        board = json.loads(path.read_text(encoding="utf-8"))
        for panel in board["panels"]:
            for t in panel.get("targets", []):
                if t["datasource"]["type"] == "grafana-clickhouse-datasource":
                    out.append((board["title"], panel["title"], t["rawSql"]))
        for v in board.get("templating", {}).get("list", []):
            if v.get("type") == "query":
                out.append((board["title"], f"variable ${v['name']}", v["query"]))
    return out


# ---------------------------------------------------------------- history
def build(db_dir: Path, days: float, events_per_day: int, skus: int, shops: int, regions: int,
          seed: int, flush_events: int, end_ms: int) -> dict[str, Any]:
    from streams.app import open_store
    from streams.clickhouse import market
    from streams.clickhouse.client import connect
    from streams.core.catalog import Catalog
    from streams.core.engine import DemandEngine, runs_of
    from streams.core.pricebands import PriceBands
    from streams.settings import Settings
    from streams.sim.model import HOUR_MS, ShopSimulator

    settings = Settings(data_dir=db_dir)
    client = connect(settings)
    store = open_store(client, settings)
    engine = DemandEngine(settings.engine_config(), Catalog(PriceBands(settings.price_band_edges)))
    start_ms = end_ms - int(days * 86_400_000)
    sim = ShopSimulator(seed, start_ms, n_shops=shops, n_skus=skus, n_regions=regions,
                        orders_per_hour=events_per_day / EVENTS_PER_ORDER_HOUR)
    record = Keyed(PARTITIONS)

    for ev in sim.catalog():
        if engine.apply_product(record(ev.topic, ev.key, ev.value, ev.ts_ms)) is not None:
            raise RuntimeError("the simulator's catalog was rejected")
    n = flushes = 0
    write_s = 0.0
    t0 = time.perf_counter()
    pending = []

    def flush() -> None:
        nonlocal n, flushes, write_s, pending
        outcome = engine.process_runs(runs_of(pending))
        n += len(pending)
        pending = []
        batch = engine.flush_batch()
        a = time.perf_counter()
        store.write(batch, outcome.late, engine.config.allowed_lateness_ms)
        write_s += time.perf_counter() - a
        engine.flushed(batch)
        flushes += 1

    hours = int(days * 24)
    for h in range(hours):
        for ev in sim.events(start_ms + (h + 1) * HOUR_MS):
            pending.append(record(ev.topic, ev.key, ev.value, ev.ts_ms))
            if len(pending) >= flush_events:
                flush()
        if h % 4 == 3 or h == hours - 1:
            # the market refresher's part: the windows shorter than a day the store
            # refreshed, folded (a live worker does it every C2M_MARKET_REFRESH_SECONDS)
            a = time.perf_counter()
            market.refresh_pending(client, settings.clickhouse_database, store.market_pending)
            write_s += time.perf_counter() - a
        if h % 24 == 23 or h == hours - 1:
            print(f"  day {(h + 1) / 24:.0f}: {n:,} events, {time.perf_counter() - t0:.0f} s "
                  f"({write_s:.0f} s in ClickHouse writes)", file=sys.stderr, flush=True)
    if pending:
        flush()
    # the leader's periodic market fold (daily windows, rolling horizons), once at the end
    a = time.perf_counter()
    market.refresh_periodic(client, settings.clickhouse_database)
    write_s += time.perf_counter() - a
    build_s = time.perf_counter() - t0
    fold_days(client, settings)
    alerts_s = evaluate_alerts(client, settings)
    return {"events": n, "flushes": flushes, "build_s": round(build_s, 1),
            "write_s": round(write_s, 1), "alerts_s": round(alerts_s, 1)}


def fold_days(client: Any, settings: Any) -> None:
    """The leader's SKU days fold (``streams.clickhouse.sku_days``): every settled day at
    once here (a live leader folds each the tick after it settles; a database from before
    migration 0014 has them all folded at the first tick)."""
    from streams.clickhouse import sku_days
    from streams.clickhouse.migrations import database_timezone
    from streams.core.calendar import MarketCalendar

    db = settings.clickhouse_database
    a = time.perf_counter()
    n = sku_days.refresh(client, db, int(settings.correction_horizon_hours * 3_600_000),
                         MarketCalendar(database_timezone(client, db) or "UTC"))
    if n:
        print(f"  SKU days: {n} days folded in {time.perf_counter() - a:.1f} s",
              file=sys.stderr, flush=True)


def evaluate_alerts(client: Any, settings: Any) -> float:
    """The real alert service over every finished hour (messages are not published)."""
    from streams.alerting import AlertService
    from streams.clickhouse.alerts import AlertStore
    from streams.core.forecast import ForecastConfig

    async def publish(topic: str, key: bytes, value: bytes) -> Any:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done

    async def io(fn: Callable[..., Any], *args: Any) -> Any:
        return fn(*args)

    async def run() -> None:
        service = AlertService(AlertStore(client, settings.clickhouse_database), publish, io,
                               settings.alert_config(), idle_wall_s=0,
                               calendar=settings.calendar(),
                               promotions=settings.promotions(), forecast=ForecastConfig(),
                               resolved_keep_s=settings.retention_resolved_alert_days * 86_400
                               or None)
        while await service.tick():
            pass

    t0 = time.perf_counter()
    asyncio.run(run())
    return time.perf_counter() - t0


def settle(client: Any, timeout_s: float = 120) -> None:
    """Wait until ClickHouse has no merge or mutation running (as on a database that has
    been serving for a while)."""
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        busy = client.query(
            "SELECT (SELECT count() FROM system.merges) + "
            "(SELECT count() FROM system.mutations WHERE NOT is_done)").result_rows[0][0]
        if not busy:
            return
        time.sleep(1)


# ---------------------------------------------------------------- queries
class Query(NamedTuple):
    """One user-triggerable query: the call that runs it, and how far back from the end of
    the history it reads (seconds of event time), or None when it reads no time range (a
    current state: open alerts, the catalog, progress). The span says which histories hold
    all of its range: ``report`` compares its time with the smallest of them too."""

    run: Callable[[], Any]
    span_s: int | None


#: how far back each call of the web page reads (``streams.clickhouse.views``): the 24 h
#: horizon, 24 hourly points, the brief's 14 days, the rolling view's 7-day horizon
VIEW_SPANS: dict[str, int | None] = {"summary": 86_400, "breakdown": 86_400,
                                     "series": 86_400, "alerts": None,
                                     "brief": 14 * 86_400, "rolling": 7 * 86_400}


def panel_span(sql: str, range_s: int) -> int | None:
    """How far back a Grafana panel reads for a dashboard range of ``range_s``: the
    production brief its own days, the rolling table its 24 h horizon, a panel with the
    time macros the range, any other panel (open alerts) no range."""
    if m := re.search(r"production_brief\(days=(\d+)", sql):
        return int(m.group(1)) * 86_400
    if "market_rolling" in sql:
        return 86_400
    return range_s if "$__" in sql else None


def user_queries(client: Any, db: str, end_s: int) -> dict[str, Query]:
    """name -> one user-triggerable query."""
    from streams.clickhouse import sku_days
    from streams.clickhouse.alerts import AlertStore
    from streams.clickhouse.migrations import database_timezone
    from streams.clickhouse.store import DemandStore
    from streams.clickhouse.views import run_view
    from streams.core.alerting.book import AlertBook
    from streams.core.alerting.inputs import DAY, HOUR, InputCache, settled_before
    from streams.core.calendar import MarketCalendar
    from streams.core.forecast import ForecastConfig, brief_forecasts
    from streams.core.promotions import NO_PROMOTIONS
    from streams.core.tokens import Scope
    from streams.settings import Settings

    alerts = AlertStore(client, db)
    top_cat = client.query(
        f"SELECT category FROM {db}.demand_cells WHERE window_seconds = 86400 "  # noqa: S608
        "GROUP BY category ORDER BY sum(units) DESC LIMIT 1").result_rows[0][0]
    factory = client.query(
        f"SELECT factory_id FROM {db}.products_current GROUP BY factory_id "  # noqa: S608
        "ORDER BY count() DESC LIMIT 1").result_rows[0][0]
    q: dict[str, Query] = {}

    def add(name: str, span_s: int | None, run: Callable[[], Any]) -> None:
        q[name] = Query(run, span_s)

    settings = {"A": {"window": "3600", "category": "__all", "factory": "__all"},
                "B": {"window": "300", "category": top_cat, "factory": factory}}
    for board, title, raw in grafana_queries():
        raw = raw.replace("c2m.", f"{db}.")
        if "$" not in raw:  # no range, no variable: one query
            add(f"grafana {board}: {title}", None, lambda sql=raw: client.query(sql).result_rows)
            continue
        for rname, (span, interval) in RANGES.items():
            for vname, variables in settings.items():
                sql = expand(raw, end_s - span, end_s, interval, variables)
                add(f"grafana {board}: {title} [{rname}, {vname}]", panel_span(raw, span),
                    lambda sql=sql: client.query(sql).result_rows)
    page: list[Callable[[], Any]] = []
    factory_page: list[Callable[[], Any]] = []
    for view, args in [("summary", {"horizon": "24h"}),
                       ("breakdown", {"dim": "color", "horizon": "24h", "limit": "10"}),
                       ("breakdown", {"dim": "size", "horizon": "24h", "limit": "10"}),
                       ("breakdown", {"dim": "price_band", "horizon": "24h", "limit": "10"}),
                       ("series", {"dim": "color", "window": "3600", "points": "24", "top": "5"}),
                       ("alerts", {"limit": "20"}),
                       ("brief", {"days": "14", "run_days": "30"}),
                       ("rolling", {"limit": "15"})]:
        name = f"/api/view/{view}?" + "&".join(f"{k}={v}" for k, v in args.items())

        def call(view: str = view, args: dict[str, str] = args) -> Any:
            return run_view(client, db, view, args)

        def as_factory(view: str = view, args: dict[str, str] = args) -> Any:
            return run_view(client, db, view, args, Scope("factory", factory))

        add(name, VIEW_SPANS[view], call)
        page.append(call)
        factory_page.append(as_factory)
    for h in ("1h", "7d"):
        add(f"/api/view/summary?horizon={h}", {"1h": HOUR, "7d": 7 * DAY}[h],
            lambda h=h: run_view(client, db, "summary", {"horizon": h}))
    add("web view page (all its API calls)", 14 * DAY, lambda: [c() for c in page])
    add("web view page with a factory's token (all its API calls)", 14 * DAY,
        lambda: [c() for c in factory_page])
    add("/api/alerts?factory=F", None, lambda: alerts.alerts(factory))
    add("/api/alerts (all)", None, lambda: alerts.alerts(""))
    add("/api/brief, c2m brief (category, 14 d, run 30 d)", 14 * DAY,
        lambda: alerts.brief(top_cat, "", 14, 30))
    add("/api/brief for one factory", 14 * DAY, lambda: alerts.brief(top_cat, factory, 14, 30))
    add("c2m.production_brief (plain SELECT *)", 14 * DAY, lambda: client.query(
        f"SELECT * FROM {db}.production_brief(days=14, run_days=30, factory='')"  # noqa: S608
    ).result_rows)
    hour = end_s - end_s % HOUR - 2 * HOUR

    def alert_inputs() -> Any:
        alerts.partition_progress()
        alerts.first_hour()
        lead = alerts.max_lead_time_days()
        return alerts.load_inputs(hour - 14 * DAY, hour + HOUR, hour + HOUR - 2 * lead * DAY)

    # 14 days before the hour and the hour; restock movements from twice the longest lead
    # time before it (the simulator's leads are 2-4 days)
    inputs_span = 15 * DAY
    add("alert service: input load for one hour", inputs_span, alert_inputs)

    # what the running service reads each hour (streams.alerting, InputCache; the first
    # load after a start is the one above): the hours the checkpoints since the last load
    # say changed, and the hour new to the span. The database stands still here, so the
    # checkpoints name none: the two hours before the new one are counted as changed, as
    # at a live market (the hour that just ended was refreshed until it ended, and late
    # events reach back). Each call is the next hour, from 22 hours before ``hour`` on
    # (at most 21 calls: the warm-up and 20 repeats).
    kept: dict[str, Any] = {"cache": InputCache(), "h": hour - 22 * HOUR}
    horizon_s = math.ceil(Settings().correction_horizon_hours * 3600)

    def alert_inputs_kept() -> Any:
        h = kept["h"]
        kept["h"] = h + HOUR
        marks = {tp: p.watermark_ms for tp, p in alerts.partition_progress().items()}
        alerts.first_hour()
        lead = alerts.max_lead_time_days()
        lo, hi, mf = h - 14 * DAY, h + HOUR, h + HOUR - 2 * lead * DAY
        cache = kept["cache"]
        settled = settled_before(marks, [], horizon_s)
        start = cache.plan(lo, hi, mf, settled, marks)
        changes = alerts.changed_hours(cache.seen) if start is not None else None
        also: list[int] = []
        if start is not None and changes is not None:
            seen, changed = changes
            start, also = cache.partial(start, changed | {h - HOUR, h - 2 * HOUR})
        else:
            start = None
            seen = alerts.checkpoint_positions()
        loaded = (alerts.load_inputs(lo, hi, mf) if start is None
                  else alerts.load_inputs(start, hi, None, also))
        return cache.take(lo, hi, mf, start, loaded, marks, settled, also, seen)

    add("alert service: input load for one hour, inputs kept (each hour after the first)",
        inputs_span, alert_inputs_kept)

    zone = database_timezone(client, db) or "UTC"

    # the day the service last forecast up to; when the history ends at a local midnight
    # it has not made one yet (it does once the next day's first hour is evaluated): the
    # day that just ended, as it will
    last_day = alerts.forecast_as_of() or datetime.fromtimestamp(
        end_s - 1, ZoneInfo(zone)).date().toordinal()

    def forecast() -> Any:  # once a local day: 56 days of daily demand, then the model
        last = last_day
        cfg = ForecastConfig()
        demand = alerts.daily_demand(date.fromordinal(last - cfg.history_days + 1),
                                     date.fromordinal(last), zone)
        return brief_forecasts(demand, last, NO_PROMOTIONS, cfg)

    add("alert service: the daily forecast (56 days read, modelled; once a day)",
        ForecastConfig().history_days * DAY, forecast)
    def book_reload() -> Any:  # at a start: the open alerts and those still cooling down
        last = alerts.last_evaluated()
        bound = None if last is None else AlertBook().restore_bound(last + HOUR)
        return alerts.current_alerts(bound)

    add("alert service: current alerts (book reload)", None, book_reload)
    horizon_ms = int(Settings().correction_horizon_hours * 3_600_000)
    calendar = MarketCalendar(zone)
    add("alert leader: SKU days, a tick with no day newly settled", None,
        lambda: sku_days.refresh(client, db, horizon_ms, calendar))
    # once a local day: the fold of the day that settled (its SELECT; the INSERT of 4,000
    # rows is not timed, and the database stays as built)
    cut = client.query(
        f"SELECT toUnixTimestamp(cut) FROM {db}.sku_days_cut").result_rows  # noqa: S608
    if cut and cut[0][0]:
        settled = calendar.day(int(cut[0][0]) - 1)
        fold = sku_days.fold_sql(db).split(") SELECT ", 1)[1]
        add("alert leader: SKU days, the fold of a day that settled (once a day)", DAY, (
            lambda: client.query("SELECT " + fold, parameters={
                "lo": settled[0], "hi": settled[1]}).result_rows))
    day = client.query(
        f"SELECT max(window_start) FROM {db}.demand_cells WHERE window_seconds = 86400 "  # noqa: S608
        "AND window_end <= toDateTime({e:Int64})", parameters={"e": end_s}).result_rows[0][0]
    add("plain SELECT of one local day (demand_by_attribute)", DAY, lambda: client.query(
        f"SELECT * FROM {db}.demand_by_attribute WHERE window_seconds = 86400 "  # noqa: S608
        "AND window_start = {d:DateTime}", parameters={"d": day}).result_rows)
    store = DemandStore(client, db)
    add("demo live table (top cells of the newest 5-minute window)", 300,
        lambda: store.top_cells(300, 8))
    # the market views (cells of fewer than k shops folded: stored by the writer) against
    # the same sums of every cell
    for label, seconds, span in (("5-minute windows, last 24 h", 300, 86_400),
                                 ("hourly windows, last 24 h", 3600, 86_400),
                                 ("hourly windows, last 7 d", 3600, 7 * 86_400),
                                 ("daily windows, last 30 d", 86_400, 30 * 86_400)):
        p = {"s": seconds, "lo": end_s - span, "hi": end_s}
        add(f"units by colour, {label}: demand_by_attribute", span, lambda p=p: client.query(
            f"SELECT color, sum(units) FROM {db}.demand_by_attribute "  # noqa: S608
            "WHERE window_seconds = {s:UInt32} AND window_start >= toDateTime({lo:Int64}) "
            "AND window_start < toDateTime({hi:Int64}) GROUP BY color", parameters=p
        ).result_rows)
        add(f"units by colour, {label}: market_demand", span, lambda p=p: client.query(
            f"SELECT color, sum(units) FROM {db}.market_demand(seconds={{s:UInt32}}, "  # noqa: S608
            "from_s={lo:Int64}, to_s={hi:Int64}) GROUP BY color", parameters=p).result_rows)
    for view in ("demand_rolling", "market_rolling"):
        add(f"units by colour per horizon: {view}", 7 * DAY, lambda view=view: client.query(
            f"SELECT horizon, color, sum(units) FROM {db}.{view} "  # noqa: S608
            "GROUP BY horizon, color").result_rows)
    return q


def time_queries(queries: dict[str, Query], repeats: int) -> dict[str, Any]:
    """p50 and p95 (nearest rank: with 20 repeats the second slowest) of every query, after
    one untimed run."""
    out = {}
    for name, (fn, span_s) in queries.items():
        fn()  # first run: warm caches (a dashboard is opened more than once a day)
        ts = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            ts.append((time.perf_counter() - t0) * 1000)
        ts.sort()
        p95 = ts[min(len(ts) - 1, round(0.95 * (len(ts) - 1)))]
        out[name] = {"p50_ms": round(statistics.median(ts), 1), "p95_ms": round(p95, 1),
                     "span_s": span_s}
        print(f"  {out[name]['p50_ms']:9.1f} {out[name]['p95_ms']:9.1f}  {name}",
              file=sys.stderr, flush=True)
    return out


def storage(client: Any, db: str, events: int) -> dict[str, Any]:
    rows = client.query(
        "SELECT table, sum(rows), sum(data_compressed_bytes), sum(data_uncompressed_bytes) "
        "FROM system.parts WHERE database = {d:String} AND active GROUP BY table "
        "ORDER BY table", parameters={"d": db}).result_rows
    per = events / 1e6
    return {t: {"rows_per_event": round(r / max(events, 1), 3),
                "compressed_bytes_per_million_events": round(c / per),
                "uncompressed_bytes_per_million_events": round(u / per)}
            for t, r, c, u in rows}


# ---------------------------------------------------------------- child and main
def child(args: argparse.Namespace) -> dict[str, Any]:
    from streams.clickhouse.client import connect
    from streams.clickhouse.migrations import database_timezone, migrate
    from streams.settings import Settings

    days = args.days[0]
    key = (f"d{days}-e{args.events_per_day}-k{args.skus}-s{args.shops}-r{args.regions}"
           f"-x{args.seed}-f{args.flush_events}")
    db_dir = Path(args.workdir) / key
    meta_path = db_dir / "bench-read.json"
    if meta_path.exists() and not args.rebuild:
        meta = json.loads(meta_path.read_text())
        print(f"D = {days}: reusing {db_dir}", file=sys.stderr)
    else:
        if db_dir.exists():
            import shutil

            shutil.rmtree(db_dir)
        db_dir.mkdir(parents=True)
        end_ms = int(time.time() * 1000) // 3_600_000 * 3_600_000
        print(f"D = {days}: building {db_dir}", file=sys.stderr)
        meta = build(db_dir, days, args.events_per_day, args.skus, args.shops, args.regions,
                     args.seed, args.flush_events, end_ms)
        meta["end_s"] = end_ms // 1000
        meta_path.write_text(json.dumps(meta))
    settings = Settings(data_dir=db_dir)
    client = connect(settings)
    db = settings.clickhouse_database
    # a cached database from older code: the migrations a worker would apply at start
    applied = migrate(client, db, timezone=database_timezone(client, db) or settings.timezone)
    if applied:
        print(f"D = {days}: migrations {applied} applied", file=sys.stderr)
    fold_days(client, settings)  # what the leader's first tick does after an upgrade
    # and the alert service's (an hour the build left unevaluated, the resolved alerts'
    # retention: a database from older code kept every alert in c2m.alerts)
    evaluate_alerts(client, settings)
    settle(client)
    results = time_queries(user_queries(client, db, meta["end_s"]), args.repeats)
    return {"days": days, "build": meta, "queries": results,
            "storage": storage(client, db, meta["events"])}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--days", type=float, nargs="+", default=[1, 7, 30])
    p.add_argument("--events-per-day", type=int, default=1_000_000)
    p.add_argument("--skus", type=int, default=4000)
    p.add_argument("--shops", type=int, default=100)
    p.add_argument("--regions", type=int, default=30)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--flush-events", type=int, default=5000)
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--rounds", type=int, default=1,
                   help="time every D this many times, D after D, and report the medians")
    p.add_argument("--workdir", default=str(ROOT / ".bench-read"))
    p.add_argument("--rebuild", action="store_true", help="ignore a cached database")
    p.add_argument("--json", help="write all results to this file")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        print(json.dumps(child(args)))
        return
    rounds: list[list[dict[str, Any]]] = []
    for i in range(args.rounds):
        rounds.append([])
        for d in args.days:
            cmd = [sys.executable, "-m", "bench.read", "--child", "--days", str(d)]
            for opt in ("events_per_day", "skus", "shops", "regions", "seed", "flush_events",
                        "repeats", "workdir"):
                cmd += [f"--{opt.replace('_', '-')}", str(getattr(args, opt))]
            if args.rebuild and i == 0:
                cmd.append("--rebuild")
            out = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.PIPE, check=True, text=True)
            rounds[-1].append(json.loads(out.stdout))
    results = merge_rounds(rounds)
    report(results)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1, ensure_ascii=False))


def merge_rounds(rounds: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """One result per D from several rounds (each round times every D once, in order, so
    that the machine's drift during a run falls on every D alike): per query the median
    of the rounds' p50 and of their p95 (the rounds' own numbers stay under "rounds")."""
    if len(rounds) == 1:
        return rounds[0]
    out = []
    for per_d in zip(*rounds, strict=True):
        merged = dict(per_d[0])
        merged["queries"] = {
            name: {**q, "p50_ms": round(statistics.median(r["queries"][name]["p50_ms"]
                                                          for r in per_d), 1),
                   "p95_ms": round(statistics.median(r["queries"][name]["p95_ms"]
                                                     for r in per_d), 1)}
            for name, q in per_d[0]["queries"].items()}
        merged["rounds"] = [r["queries"] for r in per_d]
        out.append(merged)
    return out


def held_by(results: list[dict[str, Any]], name: str) -> dict[str, Any] | None:
    """The result of the smallest history in the run that holds all of the query's range
    (the first, when the query reads no range), if smaller than the last."""
    span = results[-1]["queries"][name].get("span_s")
    for r in results[:-1]:
        if span is None or r["days"] * 86_400 >= span:
            return r
    return None


def report(results: list[dict[str, Any]]) -> None:
    """Markdown tables: each query's p50 / p95 per D, with two ratios of the p95 at the
    largest D: to the smallest D (issue 17's fixed-range criterion; for a range longer
    than that history it also counts the data in range that the smaller history does not
    hold), and to the smallest D that holds all of the query's range ("held": what the
    history outside the range costs)."""
    days = [r["days"] for r in results]
    print("\nbuild: " + "; ".join(
        f"D={r['days']:g}: {r['build']['events']:,} events, {r['build']['flushes']} flushes, "
        f"{r['build']['build_s']} s ({r['build']['write_s']} s writes), alerts "
        f"{r['build']['alerts_s']} s" for r in results))
    head = " | ".join(f"D={d:g} p50 / p95 ms" for d in days)
    many = len(days) > 1
    ratio = (f" | p95 D={days[-1]:g} / D={days[0]:g} | p95 D={days[-1]:g} / the smallest D "
             "holding the range" if many else "")
    print(f"\n| query | {head}{ratio} |\n|---|" + "---|" * (len(days) + (2 if many else 0)))
    over = {"first": 0, "held": 0, "unheld": 0}
    for name in results[-1]["queries"]:
        cells = [f"{r['queries'][name]['p50_ms']:.0f} / {r['queries'][name]['p95_ms']:.0f}"
                 if name in r["queries"] else "-" for r in results]
        line = f"| {name} | " + " | ".join(cells)
        if many and name in results[0]["queries"]:
            last = results[-1]["queries"][name]["p95_ms"]
            x = last / max(results[0]["queries"][name]["p95_ms"], 0.1)
            over["first"] += x > 1.5
            line += f" | {x:.2f}"
            held = held_by(results, name)
            if held is None:
                over["unheld"] += 1
                line += " | -"
            else:
                y = last / max(held["queries"][name]["p95_ms"], 0.1)
                over["held"] += y > 1.5
                line += f" | {y:.2f} (D={held['days']:g})"
        print(line + " |")
    if many:
        n = len(results[-1]["queries"])
        print(f"\n{n} queries; p95 at D={days[-1]:g} over 1.5x: {over['first']} against "
              f"D={days[0]:g}, {over['held']} against the smallest D holding their range "
              f"({over['unheld']} read a range only D={days[-1]:g} holds)")
    print("\n| table | " + " | ".join(f"D={d:g} bytes / 1M events (rows / event)"
                                       for d in days) + " |\n|---|" + "---|" * len(days))
    tables = sorted({t for r in results for t in r["storage"]})
    for t in tables:
        cells = []
        for r in results:
            s = r["storage"].get(t)
            cells.append("-" if s is None else
                         f"{s['compressed_bytes_per_million_events']:,} ({s['rows_per_event']})")
        print(f"| {t} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
