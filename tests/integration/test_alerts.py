"""Alerts end to end on the real stack: a scenario with injected truth goes through the
broker and a worker; the alerts in ClickHouse and on the factory topics must equal what
the pure rules compute from an independent aggregation of the raw events; a restart adds
nothing; a replay into a new database gives the same alert ids and versions; the
production brief matches a plain-Python computation; `c2m alerts tail` shows a factory's
alerts once each."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import time
import urllib.request
from collections import defaultdict
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pytest

from schemas.alerts import TOPIC_DEMAND_SIGNALS, TOPIC_RESTOCK_ALERTS, AlertMessage
from streams.clickhouse.views import QUERIES
from streams.core.alerting.evaluator import AlertConfig, AlertEvaluator, PreparedInputs
from streams.core.forecast import brief_forecasts
from streams.core.pricebands import PriceBands
from streams.core.tenancy import restock_topic
from tests.helpers.processes import Worker, consume_all, produce
from tests.integration.chromium import Chromium
from tests.oracle import MARKET_TZ
from tests.signals.quality import DAY_MS, HOUR_MS, START_MS, scenario_events
from tests.signals.reference import reference_inputs, ts_ms

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DAYS = 3.0
SURGE_MS = START_MS + 2 * DAY_MS + 2 * HOUR_MS
#: the scenario's 60 SKUs come from 5 shops: most signal keys have one shop, so the k-shop
#: rule of market signals (tests/signals/test_market_signals.py) runs here with k = 1: the
#: worker and the reference below apply the same rule
K = 1
ENV = {"C2M_ALERT_INTERVAL_SECONDS": "0.5", "C2M_ALERT_IDLE_WALL_SECONDS": "10",
       "C2M_MIN_SHOPS_PER_SIGNAL": str(K)}


def _run_until_idle(w: Worker, n_events: int) -> dict[str, Any]:
    """Wait until every event is consumed and the alert evaluator has caught up."""
    w.start()
    w.wait_consumed(n_events, timeout=240)
    last: Any = None
    stable_since = time.monotonic()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        stats = w.stats() or {}
        cur = (stats.get("alert_last_hour"), stats.get("flushes"))
        if cur != last:
            last, stable_since = cur, time.monotonic()
        elif stats.get("pending_events") == 0 and time.monotonic() - stable_since > 4:
            return stats
        time.sleep(0.5)
    raise AssertionError(f"alerts did not settle: {last}\n{w.log_tail()}")


def _history(w: Worker) -> list[tuple[Any, ...]]:
    return w.query(
        "SELECT alert_id, version, kind, state, severity, toUnixTimestamp(window_start) "
        "FROM c2m.alert_history FINAL ORDER BY window_start, kind, alert_id, version"
    )


def test_alerts_end_to_end(worker_factory: Any, tmp_path: Path) -> None:
    events, _ = scenario_events(7, DAYS, SURGE_MS)
    msgs = [(e.topic, e.key.encode(), orjson.dumps(e.value)) for e in events]
    w = worker_factory(**ENV)
    produce(w.bootstrap, msgs)
    n_demand = sum(1 for e in events if e.topic != "shop.products")

    stats = _run_until_idle(w, n_demand)
    metrics_url = f"http://127.0.0.1:{w.env['C2M_METRICS_PORT']}/metrics"
    with urllib.request.urlopen(metrics_url, timeout=5) as resp:
        exposition = resp.read().decode()
    published_by_kind: dict[str, float] = defaultdict(float)
    for line in exposition.splitlines():
        if line.startswith("c2m_alerts_total{"):
            kind = line.split('kind="')[1].split('"')[0]
            published_by_kind[kind] += float(line.rsplit(" ", 1)[1])
    assert w.stop() == 0
    last_hour = stats["alert_last_hour"]
    assert last_hour is not None and last_hour >= SURGE_MS // 1000 + 3 * 3600
    got = _history(w)

    # the oracle: the pure rules on an independent aggregation of the raw events
    prep = PreparedInputs(reference_inputs(events))
    assert prep.first_hour is not None
    ev = AlertEvaluator(AlertConfig(min_shops=K))
    want = []
    for h in range(prep.first_hour, last_hour + 3600, 3600):
        for a in ev.evaluate(h, prep):
            want.append((a.alert_id, a.version, a.kind, a.state, a.severity, a.window_start))
    key = lambda r: (r[5], r[2], r[0], r[1])  # noqa: E731
    assert sorted(got, key=key) == sorted(want, key=key)
    for kind in ("restock", "surge", "rising_share"):
        assert published_by_kind[kind] == sum(1 for r in got if r[2] == kind), kind
    kinds = {r[2] for r in got}
    assert {"restock", "surge", "rising_share"} <= kinds
    assert any(r[2] == "restock" and r[4] == "critical" for r in got)

    # the published messages: every stored version, valid against the contract; restock
    # alerts on their factory's own topic keyed by SKU, market signals keyed by category
    # and naming no factory; a duplicate delivery is identical
    published: dict[tuple[str, int], bytes] = {}
    factory_of = dict(w.query("SELECT alert_id, factory_id FROM c2m.alerts FINAL "
                              "WHERE kind = 'restock'"))
    topics = {TOPIC_DEMAND_SIGNALS: sum(1 for r in got if r[2] != "restock")}
    for r in got:
        if r[2] == "restock":
            t = restock_topic(factory_of[r[0]])
            topics[t] = topics.get(t, 0) + 1
    for topic, n in topics.items():
        for rec in consume_all(w.bootstrap, topic, n, timeout=20):
            msg = AlertMessage.model_validate_json(rec.value)
            if msg.kind == "restock":
                assert topic == restock_topic(msg.factory_id or "")
                assert rec.key.decode() == msg.sku and msg.factories == [msg.factory_id]
            else:
                assert topic == TOPIC_DEMAND_SIGNALS
                assert rec.key.decode() == msg.category and msg.factories == []
            prev = published.setdefault((msg.alert_id, msg.version), rec.value)
            assert prev == rec.value
    assert set(published) == {(r[0], r[1]) for r in got}
    assert not consume_all(w.bootstrap, TOPIC_RESTOCK_ALERTS, 1, timeout=2)  # opt-in only

    # a restart evaluates nothing twice and publishes nothing new; the web view's brief
    # speaks of the forecast (made from the complete local days) and shows its interval
    _run_until_idle(w, 0)
    with Chromium(tmp_path / "chromium") as browser:
        page = browser.visit(f"http://127.0.0.1:{w.web_port}/view", 1280)
    assert "预测 forecast: " in page["text"] and "数量区间 qty range (95%)" in page["text"]
    assert "unavailable" not in page["text"]
    assert w.stop() == 0
    assert _history(w) == got
    assert sum(len(consume_all(w.bootstrap, t, 10**6, timeout=3)) for t in topics) == len(
        published)

    # a replay of the topics into a new database: the same alert ids and versions
    replay = worker_factory(**ENV, C2M_APP_ID="c2m-replay")
    stats2 = _run_until_idle(replay, n_demand)
    assert replay.stop() == 0
    assert stats2["alert_last_hour"] == last_hour
    assert _history(replay) == got

    _check_brief(w, events)
    _check_tail(w, got, factory_of)


def _check_brief(w: Worker, events: list[Any]) -> None:
    """production_brief against a plain-Python computation over the raw events: the last
    ``days`` local days of the market (China time), today so far included."""
    days = 2
    rows = w.query(
        "SELECT toUnixTimestamp(as_of), dimension, value, net_units, orders, pageviews, "
        "recommended_qty, days_with_data FROM c2m.production_brief(days={d:UInt32}, "
        "run_days=30, factory='') WHERE category = {c:String}",
        d=days, c="袜子",
    )
    assert rows
    as_of = rows[0][0]
    zone = ZoneInfo(MARKET_TZ)
    first_day = datetime.fromtimestamp(as_of - 1, zone).date() - timedelta(days=days - 1)
    lo = int(datetime(first_day.year, first_day.month, first_day.day, tzinfo=zone).timestamp())
    bands = PriceBands()
    products = {
        e.value["sku"]: e.value for e in events if e.value["event_type"] == "product_upsert"
    }
    net: dict[tuple[str, str], int] = defaultdict(int)
    for e in events:
        v = e.value
        if v["event_type"] not in ("order_placed", "order_cancelled", "returned"):
            continue
        t = ts_ms(v["ts"]) // 1000 // 3600 * 3600
        if not lo <= t < as_of:
            continue
        lines = v["lines"] if "lines" in v else [{"sku": v["sku"], "qty": v["qty"]}]
        sign = 1 if v["event_type"] == "order_placed" else -1
        for line in lines:
            p = products[line["sku"]]
            if p["category"] != "袜子":
                continue
            for dim, value in (("color", p["color"]), ("size", p["size"]),
                               ("price_band", bands.label(p["list_price"])), ("total", "")):
                net[(dim, value)] += sign * line["qty"]
    got = {(r[1], r[2]): r[3] for r in rows}
    assert got == {k: v for k, v in net.items() if k in got or v != 0}
    _check_forecast(w, events, products, as_of)


def _check_forecast(w: Worker, events: list[Any], products: dict[str, Any], as_of: int) -> None:
    """The brief's quantities come from the forecast of the complete local days: the
    forecast of an independent daily aggregation of the raw events (China days) equals
    what the alert service stored and the view serves."""
    zone = ZoneInfo(MARKET_TZ)
    last_day = datetime.fromtimestamp(as_of, zone).date().toordinal() - 1
    bands = PriceBands()
    demand: dict[tuple[str, str, str, str, str, int], float] = defaultdict(float)
    for e in events:
        v = e.value
        if v["event_type"] not in ("order_placed", "order_cancelled", "returned"):
            continue
        day = datetime.fromtimestamp(ts_ms(v["ts"]) / 1000, zone).date().toordinal()
        lines = v["lines"] if "lines" in v else [{"sku": v["sku"], "qty": v["qty"]}]
        sign = 1 if v["event_type"] == "order_placed" else -1
        for line in lines:
            p = products[line["sku"]]
            demand[(p["factory_id"], p["category"], p["color"], p["size"],
                    bands.label(p["list_price"]), day)] += sign * line["qty"]
    want = {(f, c, d, val): rf for _, f, c, d, val, rf, _, _ in brief_forecasts(
        [(*k, x) for k, x in demand.items()], last_day)}
    stored = w.query(
        "SELECT as_of_day, factory_id, category, dimension, value, cum_mean, cum_sd "
        "FROM c2m.brief_forecast FINAL WHERE as_of_day = (SELECT max(as_of_day) "
        "FROM c2m.brief_forecast)"
    )
    # computed once a day as the days completed; the newest is the last complete day
    assert {date.fromisoformat(str(r[0])).toordinal() for r in stored} == {last_day}
    assert {(r[1], r[2], r[3], r[4]) for r in stored} == set(want)
    for _, f, c, d, val, mean, sd in stored:
        rf = want[(f, c, d, val)]
        assert len(mean) == 90
        for k in (0, 29, 89):
            assert abs(mean[k] - rf.cum_mean[k]) <= 0.01 + 1e-6 * rf.cum_mean[k]
            assert abs(sd[k] - rf.cum_sd[k]) <= 0.01 + 1e-6 * rf.cum_sd[k]
    rows = w.query(
        "SELECT dimension, value, method, recommended_qty, qty_low, qty_high, run_days "
        "FROM c2m.production_brief(days=14, run_days=30, factory='') WHERE category = '袜子'"
    )
    assert rows and all(r[2] == "forecast" and r[6] == 30 for r in rows)
    for dim, value, _, qty, low, high in (r[:6] for r in rows):
        rf = want[("", "袜子", dim, value)]
        mean, sd = rf.total(30)
        assert abs(qty - math.ceil(mean)) <= 1
        assert abs(low - math.ceil(max(mean - 1.96 * sd, 0))) <= 1
        assert abs(high - math.ceil(mean + 1.96 * sd)) <= 1
    # the web view's brief query: the same quantities, the forecast named, lost units
    view = w.query(QUERIES["brief"].sql[""].replace("{db}", "c2m"),
                   category="袜子", days=14, run_days=30, factory="")  # the operator's
    by_key = {(r[0], r[1]): r for r in rows}
    assert view and {r[13] for r in view} == {"forecast"}
    for r in view:
        assert r[3] == by_key[(r[1], r[2])][3] and r[12] >= 0
    # one factory's brief reads that factory's forecast
    factory = next(iter(sorted({p["factory_id"] for p in products.values()
                                if p["category"] == "袜子"})))
    rows_f = w.query(
        "SELECT dimension, value, recommended_qty FROM c2m.production_brief(days=14, "
        "run_days=30, factory={f:String}) WHERE category = '袜子'", f=factory)
    for dim, value, qty in rows_f:
        assert abs(qty - math.ceil(want[(factory, "袜子", dim, value)].total(30)[0])) <= 1


def _check_tail(w: Worker, got: list[tuple[Any, ...]], factory_of: dict[str, str]) -> None:
    """`c2m alerts tail` prints each alert version once: an operator's (no factory) every
    version; `--factory F` only F's restock alerts, read from F's own topic; with
    `--market` also the market signals."""
    env = {**os.environ, "C2M_KAFKA_BOOTSTRAP": w.bootstrap, "C2M_DATA_DIR": str(w.data_dir)}

    def tail(*args: str) -> list[tuple[str, str]]:
        out = subprocess.run(
            [sys.executable, "-m", "streams.cli", "alerts", "tail", *args, "--idle-exit", "3"],
            env=env, capture_output=True, text=True, timeout=60, check=True,
        ).stdout
        return [tuple(ln.split("#")[1].split()[:2]) for ln in out.splitlines() if "#" in ln]

    everything = tail()
    assert len(everything) == len(got)  # every version once, though the replay re-published
    factory = factory_of[next(r for r in got if r[2] == "restock")[0]]
    mine = {(r[0], f"v{r[1]}") for r in got if r[2] == "restock" and factory_of[r[0]] == factory}
    shown = tail("--factory", factory, "--lang", "zh")
    assert sorted(shown) == sorted(mine)  # the replay published each a second time
    signals = {(r[0], f"v{r[1]}") for r in got if r[2] != "restock"}
    assert sorted(tail("--factory", factory, "--market")) == sorted(mine | signals)
    assert tail("--factory", "F999") == []  # a factory without alerts: nothing
