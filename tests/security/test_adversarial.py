"""The adversarial suite of issue 22, on the embedded stack (a real Tansu broker, a real
worker, real chDB, real HTTP): factory A tries to read factory B's alerts, brief, SKUs and
stock through every endpoint, parameter, header, path, topic and dashboard variable, and
gets nothing of B's; no shared output shows a cell that fewer than k shops made.

One simulated day and a half of six factories' shops (SKUs running out, so several
factories have restock alerts) goes through the broker and one worker that requires web
tokens. Everything of B's that must not leak (its SKU ids, alert ids and factory id in a
restock context) is known from the raw events and ClickHouse; every answer A gets is
searched for it.
"""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from schemas.alerts import TOPIC_DEMAND_SIGNALS, TOPIC_RESTOCK_ALERTS, AlertMessage
from streams.core import tenancy
from streams.core.dedup import id_hash
from streams.core.kanon import FAMILIES, Row, counts, fold, publishable, shop_tag
from streams.kafka.embedded import EmbeddedBroker
from streams.kafka.topics import ensure_topics
from streams.sim.model import DAY_MS, ShopSimulator
from streams.sim.scenario import Scenario
from streams.tokenstore import TokenStore
from tests import oracle
from tests.helpers.chdb_users import as_factory, as_owner
from tests.helpers.grafana import DASHBOARDS, expand, load_dashboard
from tests.helpers.processes import Worker, consume_all, produce
from tests.integration.chromium import Chromium

pytestmark = [pytest.mark.integration, pytest.mark.slow]

START_MS = 1_772_323_200_000  # 2026-03-01T00:00:00Z
K = 3
ROLES = ("orders", "views", "returns")


class Stack:
    """What the suite attacks, and what it knows."""

    def __init__(self) -> None:
        self.worker: Worker
        self.tokens: dict[str, str] = {}
        self.revoked = ""
        self.events: list[Any] = []
        self.skus: dict[str, set[str]] = {}  # factory -> its SKUs
        self.alerts: dict[str, set[str]] = {}  # factory -> its restock alert ids
        self.a = self.b = ""

    # ---------------------------------------------------------------- HTTP
    def get(self, path: str, token: str | None = None,
            headers: dict[str, str] | None = None) -> tuple[int, str]:
        conn = http.client.HTTPConnection("127.0.0.1", self.worker.web_port, timeout=30)
        h = dict(headers or {})
        if token is not None:
            h["Authorization"] = f"Bearer {token}"
        conn.request("GET", path, headers=h)  # the path exactly as given, not normalised
        resp = conn.getresponse()
        return resp.status, resp.read().decode("utf-8", "replace")

    def secrets_of(self, factory: str) -> list[str]:
        return sorted(self.skus[factory] | self.alerts[factory])


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("adversarial")
    st = Stack()
    sim = ShopSimulator(7, START_MS, n_skus=40, orders_per_hour=60,
                        scenario=Scenario(stockout_skus=6, stockout_cover_days=(0.5, 1.0)))
    st.events = sim.catalog() + sim.events(START_MS + int(1.5 * DAY_MS))
    for e in st.events:
        if e.value["event_type"] == "product_upsert":
            st.skus.setdefault(e.value["factory_id"], set()).add(e.value["sku"])
    store = TokenStore(root / "tokens.json")
    for f in sorted(st.skus):
        st.tokens[f], _ = store.create(f)
    st.revoked, gone = store.create(sorted(st.skus)[0])
    store.revoke(gone.id)
    with EmbeddedBroker(log_path=root / "broker.log") as broker:
        ensure_topics(broker.bootstrap, 4)
        produce(broker.bootstrap, [(e.topic, e.key.encode(), orjson.dumps(e.value))
                                   for e in st.events])
        st.worker = Worker(
            broker.bootstrap, root / "data", C2M_WEB_REQUIRE_TOKEN="true",  # noqa: S106
            C2M_WEB_TOKENS_FILE=str(root / "tokens.json"), C2M_ALERT_INTERVAL_SECONDS="0.5",
            C2M_ALERT_IDLE_WALL_SECONDS="5", C2M_MIN_SHOPS_PER_SIGNAL=str(K),
        )
        st.worker.start()
        n = sum(1 for e in st.events if e.topic != "shop.products")
        try:
            st.worker.wait_consumed(n, timeout=240)
            _settle(st.worker)
            # every factory's own view of its alerts (the only way in: its token)
            for f, token in st.tokens.items():
                status, body = st.get("/api/alerts?all=1", token)
                assert status == 200, body
                st.alerts[f] = {m["alert_id"] for m in json.loads(body)["alerts"]
                                if m["kind"] == "restock"}
            with_alerts = sorted(f for f, ids in st.alerts.items() if ids)
            assert len(with_alerts) >= 2, st.alerts
            st.a, st.b = with_alerts[:2]
            yield st
        finally:
            if st.worker.proc is not None and st.worker.proc.poll() is None:
                st.worker.stop()


def _settle(w: Worker) -> None:
    last: Any = None
    stable = time.monotonic()
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        stats = w.stats() or {}
        cur = (stats.get("alert_last_hour"), stats.get("flushes"))
        if cur != last:
            last, stable = cur, time.monotonic()
        elif stats.get("pending_events") == 0 and time.monotonic() - stable > 4:
            return
        time.sleep(0.5)
    raise AssertionError(f"the worker did not settle\n{w.log_tail()}")


def _leaks(text: str, secrets: list[str]) -> list[str]:
    return [s for s in secrets if s in text]


# ------------------------------------------------------------------------- the web


def test_a_token_reads_its_own_alerts_and_nothing_of_another_factory(stack: Stack) -> None:
    a, b = stack.a, stack.b
    ta = stack.tokens[a]
    b_secrets = stack.secrets_of(b)
    own = [
        "/api/alerts", "/api/alerts?all=1", f"/api/alerts?factory={a}",
        "/api/view/alerts", "/api/view/alerts?limit=200",
    ]
    for path in own:
        status, body = stack.get(path, ta)
        assert status == 200, (path, body)
        assert not _leaks(body, b_secrets), path
        doc = json.loads(body)
        if path.startswith("/api/alerts"):
            for m in doc["alerts"]:
                assert m["kind"] != "restock" or m["factory_id"] == a, path
                assert m["factories"] in ([a], []), path
    # A's own alerts are there (the suite is not vacuous)
    status, body = stack.get("/api/alerts?all=1", ta)
    assert stack.alerts[a] and all(i in body for i in stack.alerts[a])


@pytest.mark.parametrize("factory_param", [
    "{b}", "{b}%20", "%20{b}", "{b_lower}", "{b}%00", "{b}%0A", "%EF%BC%A6001",
    "'%20OR%201=1%20--", "{a}'%20OR%20factory_id='{b}", "{a}&factory={b}", "{b}&factory={a}",
    "%25", "*", "",
])
def test_asking_for_another_factory_is_refused(stack: Stack, factory_param: str) -> None:
    a, b = stack.a, stack.b
    param = factory_param.format(a=a, b=b, b_lower=b.lower())
    for endpoint in ("/api/alerts", "/api/brief"):
        path = f"{endpoint}?category=%E8%A2%9C%E5%AD%90&factory={param}"
        status, body = stack.get(path, stack.tokens[a])
        assert not _leaks(body, stack.secrets_of(b)), path
        if param in ("", a):
            assert status == 200, (path, body)
        else:
            assert status == 403, (path, status, body)


def test_the_brief_of_a_token_is_its_factory_s(stack: Stack) -> None:
    a, b = stack.a, stack.b
    cats = sorted({e.value["category"] for e in stack.events
                   if e.value["event_type"] == "product_upsert"})
    got_any = False
    for cat in cats:
        q = f"category={_quote(cat)}&days=7"
        status, body = stack.get(f"/api/brief?{q}", stack.tokens[a])
        assert status == 200 and not _leaks(body, stack.secrets_of(b)), cat
        rows = json.loads(body)["rows"]
        got_any = got_any or bool(rows)
        status, view = stack.get(f"/api/view/brief?{q}", stack.tokens[a])
        assert status == 200 and not _leaks(view, stack.secrets_of(b)), cat
        # compared with the operator's brief of factory A once the worker stopped
        _BRIEFS[(a, cat)] = rows
    assert got_any


_BRIEFS: dict[tuple[str, str], list[dict[str, Any]]] = {}


def _quote(text: str) -> str:
    from urllib.parse import quote

    return quote(text, safe="")


def test_bad_tokens_tricks_and_paths_get_nothing(stack: Stack) -> None:
    a, b = stack.a, stack.b
    ta, tb = stack.tokens[a], stack.tokens[b]
    secrets = stack.secrets_of(b) + stack.secrets_of(a)
    bad_auth = [
        {"Authorization": f"Bearer {ta[:-1]}"}, {"Authorization": f"Bearer {ta}x"},
        {"Authorization": f"Bearer {ta} {tb}"}, {"Authorization": f"Basic {ta}"},
        {"Authorization": f"Bearer {tb.upper()}"}, {"Authorization": "Bearer "},
        {"Authorization": f"Bearer {stack.revoked}"},
        {"Authorization": f"Bearer {ta}\t{tb}"},
    ]
    for headers in bad_auth:
        for path in ("/api/alerts", "/api/brief?category=x", "/api/view/alerts",
                     "/api/view/summary"):
            status, body = stack.get(path, headers=headers)
            assert status == 401, (headers, path, status)
            assert not _leaks(body, secrets)
    # a token anywhere but the Authorization header does nothing: market views only
    for path in (f"/api/alerts?token={ta}", f"/api/alerts?access_token={ta}"):
        status, body = stack.get(path, headers={"Cookie": f"token={ta}",
                                                "X-Forwarded-For": "127.0.0.1",
                                                "X-Api-Key": ta})
        assert status == 200 and not _leaks(body, secrets), path
        assert all(m["kind"] != "restock" for m in json.loads(body)["alerts"])
    # paths: traversal, encodings, case, trailing bits: 400/404, never another's data
    for path in ("/api/view/..%2Fbrief", "/api/view/../alerts", "/api/view/%2e%2e/alerts",
                 "/api/view/brief%00", "/api/view/alerts/", "/API/alerts", "/api//alerts",
                 "/api/view/alerts%3Ffactory=" + b, "/api/alerts/../brief",
                 "/api/view/brief;factory=" + b, "/api/view/nope"):
        status, body = stack.get(path, ta)
        assert not _leaks(body, stack.secrets_of(b)), path
        assert status in (200, 400, 401, 404), (path, status)
        if status == 200:
            for m in json.loads(body).get("alerts", []):
                assert m["kind"] != "restock" or m["factory_id"] == a


def test_without_a_token_only_market_views(stack: Stack) -> None:
    secrets = [s for f in stack.skus for s in stack.secrets_of(f)]
    status, body = stack.get("/api/alerts")
    assert status == 200 and all(m["kind"] != "restock" for m in json.loads(body)["alerts"])
    assert not _leaks(body, secrets)
    for path in ("/api/brief?category=x", "/api/view/brief", f"/api/alerts?factory={stack.a}"):
        status, body = stack.get(path)
        assert status in (401, 403), path
    for path in ("/api/view/summary", "/api/view/breakdown?dim=color",
                 "/api/view/breakdown?dim=region", "/api/view/rolling?limit=200",
                 "/api/view/series?dim=size&window=300&points=300",
                 "/api/view/series?dim=category&window=3600&points=48", "/api/view/alerts",
                 "/view"):
        status, body = stack.get(path)
        assert status == 200, (path, body)
        assert not _leaks(body, secrets), path  # no SKU, no restock alert anywhere


def test_the_page_with_a_token_shows_only_that_factory_s(stack: Stack, tmp_path: Path) -> None:
    """/view#token=...: the page sends the token (never in the URL it requests); its
    alerts and brief are A's; without a token the brief is refused."""
    url = f"http://127.0.0.1:{stack.worker.web_port}/view"
    # separate browsers (profiles): nothing the first page kept can reach the second
    with Chromium(tmp_path / "a") as browser:
        with_token = browser.visit(f"{url}#token={stack.tokens[stack.a]}", 1280)["html"]
    with Chromium(tmp_path / "none") as browser:
        without = browser.visit(url, 1280)["html"]
    assert 'data-ready="1"' in with_token
    assert not _leaks(with_token, stack.secrets_of(stack.b))
    assert not _leaks(without, stack.secrets_of(stack.a) + stack.secrets_of(stack.b))
    brief = [ln for ln in with_token.split("<section") if 'data-view="brief"' in ln]
    refused = [ln for ln in without.split("<section") if 'data-view="brief"' in ln]
    assert brief and 'data-loaded="1"' in brief[0]
    assert refused and "unavailable" in refused[0]
    log = stack.worker.log_tail(20_000)
    assert stack.tokens[stack.a] not in log and stack.tokens[stack.b] not in log


# ---------------------------------------------------------------------------- Kafka


def test_each_factory_s_alerts_are_only_in_its_own_topic(stack: Stack) -> None:
    bootstrap = stack.worker.bootstrap
    assert not consume_all(bootstrap, TOPIC_RESTOCK_ALERTS, 1, timeout=2)  # no shared topic
    for f in (stack.a, stack.b):
        msgs = [AlertMessage.model_validate_json(r.value)
                for r in consume_all(bootstrap, tenancy.restock_topic(f), 10**6, timeout=5)]
        assert msgs and {m.factory_id for m in msgs} == {f}
        assert {m.alert_id for m in msgs} == stack.alerts[f]
        other = stack.b if f == stack.a else stack.a
        assert not {m.sku for m in msgs} & stack.skus[other]
    for rec in consume_all(bootstrap, TOPIC_DEMAND_SIGNALS, 10**6, timeout=3):
        msg = AlertMessage.model_validate_json(rec.value)
        assert msg.kind != "restock" and msg.factories == [] and msg.sku is None


def _tail(stack: Stack, *args: str) -> str:
    env = {**os.environ, "C2M_KAFKA_BOOTSTRAP": stack.worker.bootstrap,
           "C2M_DATA_DIR": str(stack.worker.data_dir)}
    return subprocess.run(
        [sys.executable, "-m", "streams.cli", "alerts", "tail", *args, "--idle-exit", "3"],
        env=env, capture_output=True, text=True, timeout=90, check=True).stdout


def test_alerts_tail_of_one_factory_never_shows_another_s(stack: Stack) -> None:
    for me, other in ((stack.a, stack.b), (stack.b, stack.a)):
        out = _tail(stack, "--factory", me)
        shown = {ln.split("#")[1].split()[0] for ln in out.splitlines() if "#" in ln}
        assert shown == stack.alerts[me]
        assert not _leaks(out, stack.secrets_of(other))
    # ids that look like A's but are not A: nothing (their own, empty, topics)
    for fake in (f"{stack.a}.", stack.a.lower(), f"{stack.a}/../{stack.b}", f" {stack.b}x"):
        out = _tail(stack, "--factory", fake)
        assert "#" not in out, fake
    # the command line trims an id like every CLI value (issue 19): "A " is A, never B
    out = _tail(stack, "--factory", f"{stack.a} ")
    assert {ln.split("#")[1].split()[0] for ln in out.splitlines() if "#" in ln} == stack.alerts[
        stack.a]
    assert not _leaks(out, stack.secrets_of(stack.b))


# ----------------------------------------------------------------------- ClickHouse


@pytest.fixture(scope="module")
def stopped(stack: Stack) -> Stack:
    """The same stack after the worker stopped (chDB: one engine path per process)."""
    if stack.worker.proc is not None and stack.worker.proc.poll() is None:
        assert stack.worker.stop() == 0
    return stack


def test_the_brief_a_token_got_was_its_factory_s(stopped: Stack) -> None:
    a = stopped.a
    for (f, cat), rows in _BRIEFS.items():
        want = stopped.worker.query(
            "SELECT dimension, value, net_units FROM c2m.production_brief(days=7, run_days=30, "
            "factory={f:String}) WHERE category = {c:String}", f=f, c=cat)
        # /api/brief adds the order plan (one ``color_size`` row per colour x size, computed
        # in Python from the same brief and A's SKUs: streams.brief.order_plan)
        view_rows = [r for r in rows if r["dimension"] != "color_size"]
        assert sorted((r["dimension"], r["value"], r["net_units"]) for r in view_rows) == sorted(
            tuple(w) for w in want), (f, cat)
        assert f == a


def test_no_shared_output_shows_a_cell_of_fewer_than_k_shops(stopped: Stack) -> None:
    """The market views equal the fold of the cells with contributors computed from the
    raw events (independently of the engine); single-shop cells exist and never appear."""
    shops: dict[tuple[Any, ...], dict[str, set[str]]] = {}
    products = [e.value for e in stopped.events if e.value["event_type"] == "product_upsert"]
    cells = oracle.demand(products, [(e.topic, e.value) for e in stopped.events
                                     if e.topic != "shop.products"],
                          timezone=oracle.MARKET_TZ, shops=shops)
    tags = {k: frozenset(shop_tag(id_hash(s), fam) for fam, role in zip(FAMILIES, ROLES,
                                                                         strict=True)
                         for s in c[role]) for k, c in shops.items()}
    hourly = [Row(k[2:], (cells[k]["units"], cells[k]["orders"], cells[k]["pageviews"]),
                  tags[k], group=(k[1],)) for k in cells if k[0] == 3600]
    single = [r for r in hourly if max(counts(r.shops)) == 1]
    assert single, "the market has single-shop cells"
    want = {(int(r.group[0]), *r.key, r.level, *r.measures)  # type: ignore[call-overload]
            for r in fold(hourly, K)}
    lo, hi = min(k[1] for k in cells), max(k[1] for k in cells) + 3600
    got = {tuple(r) for r in stopped.worker.query(
        "SELECT toUnixTimestamp(window_start), category, color, size, price_band, region, "
        "fold_level, units, orders, pageviews FROM c2m.market_demand(seconds=3600, "
        "from_s={lo:Int64}, to_s={hi:Int64})", lo=lo, hi=hi)}
    assert got == want
    published0 = {(g[0], *g[1:6]) for g in got if g[6] == 0}
    assert not any((r.group[0], *r.key) in published0 for r in single)
    for r in fold(hourly, K):
        assert publishable(r.shops, K)
    # market signals: from k shops' orders (in the hour of a surge, the day of a rising
    # share), counted from the raw events
    bands = {p["sku"]: oracle.band(p["list_price"]) for p in products}
    by_sku = {p["sku"]: p for p in products}
    order_shops: dict[tuple[str, str, str, int], set[str]] = {}
    for e in stopped.events:
        if e.value["event_type"] != "order_placed":
            continue
        h = oracle.ts_ms(e.value["ts"]) // 3_600_000 * 3600
        for line in e.value["lines"]:
            p = by_sku[line["sku"]]
            for dim, value in (("color", p["color"]), ("size", p["size"]),
                               ("price_band", bands[line["sku"]])):
                order_shops.setdefault((p["category"], dim, value, h), set()).add(
                    e.value["shop_id"])
    for rec in consume_all(stopped.worker.bootstrap, TOPIC_DEMAND_SIGNALS, 10**6, timeout=3):
        m = AlertMessage.model_validate_json(rec.value)
        start = int(oracle.ts_ms(m.window_start) // 1000)
        hours = [start] if m.kind == "surge" else list(range(start - 82_800, start + 1, 3600))
        if m.kind != "lost_sales":
            got_shops = set().union(*(order_shops.get((m.category, m.dimension or "",
                                                       m.value or "", h), set())
                                      for h in hours))
            assert len(got_shops) >= K, m


def test_factory_a_s_clickhouse_user_and_dashboards_show_nothing_of_b(stopped: Stack) -> None:
    engine = stopped.worker.data_dir / "chdb"
    a, b = stopped.a, stopped.b
    as_owner(engine, "c2m", ["SELECT 1"])
    board = next(load_dashboard(p) for p in DASHBOARDS
                 if load_dashboard(p)["title"] == "Factory demand")
    panels = [p["targets"][0]["rawSql"] for p in board["panels"]]
    lo = START_MS // 1000
    queries = [
        "SELECT DISTINCT factory_id FROM c2m.products_current",  # the factory variable
        "SELECT DISTINCT sku FROM c2m.sku_hours",
        "SELECT alert_id, kind, factory_id FROM c2m.alerts FINAL",
        "SELECT count() FROM c2m.demand_cells",
    ]
    for value in (b, "__all", f"{b}' OR '1'='1"):
        for sql in panels:
            queries.append(expand(sql, lo, lo + 2 * 86_400, 3600,
                                  {"window": "3600", "category": "__all", "factory": value}))
    got = as_factory(engine, "c2m", a, queries)
    factories, skus, alerts, cells = got[:4]
    assert factories == [[a]]
    assert {r[0] for r in skus} <= stopped.skus[a] and skus
    assert all(k != "restock" or f == a for _, k, f in alerts)
    assert cells == {"error": "ACCESS_DENIED"}
    text = json.dumps(got[4:], ensure_ascii=False)
    assert all(isinstance(r, list) for r in got[4:]), got[4:]
    assert not _leaks(text, stopped.secrets_of(b))
