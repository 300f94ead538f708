"""The stored market fold (migration 0011) on a real chDB engine: after every flush,
``market_demand`` and ``market_rolling`` give exactly what the query-time fold of
migration 0010 gives over the same cells (its SQL, tests/helpers/market_oracle.py) and
what the pure fold gives (streams.core.kanon), through late corrections that move a key
to another fold level and back, a window whose rows all become withheld, a changed k, a
rebuild and the upgrade of a database that holds data; a cell of one shop never shows."""

from __future__ import annotations

import itertools
import zlib
from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from streams.clickhouse import market
from streams.clickhouse.migrations import load, migrate
from streams.clickhouse.store import DemandStore
from streams.core.calendar import MarketCalendar
from streams.core.catalog import Catalog
from streams.core.config import EngineConfig
from streams.core.engine import DemandEngine, Record
from streams.core.kanon import Row, counts, fold
from streams.sim.model import generate_history
from tests.helpers.engine import process
from tests.helpers.market_oracle import (
    oracle_demand,
    oracle_rolling,
    stored_demand,
    stored_rolling,
)

pytestmark = pytest.mark.integration

_names = itertools.count()
TZ = "Asia/Shanghai"
T = 1_794_326_400  # 2026-11-11 00:00 China time: a window start of every size
SIZES = (300, 3600, 86_400)


@pytest.fixture
def db(engine_client: Any) -> Iterator[str]:
    name = f"mkc{next(_names)}"
    migrate(engine_client, name, timezone=TZ)
    yield name
    engine_client.command(f"DROP DATABASE IF EXISTS {name}")


class Feed:
    """Records of hand-made events, in partition 0 of each topic, through the real engine
    and the real store (one flush per ``flush``)."""

    def __init__(self, client: Any, db: str) -> None:
        self.engine = DemandEngine(EngineConfig(timezone=TZ), Catalog())
        self.store = DemandStore(client, db, MarketCalendar(TZ))
        self.store.record_settings({"min_shops": 3})  # as every process does at start
        self.offsets: dict[str, int] = {}
        self.pending: list[Record] = []
        self.n = 0

    def _record(self, topic: str, key: str, value: dict[str, Any], ts_ms: int) -> Record:
        off = self.offsets.get(topic, 0)
        self.offsets[topic] = off + 1
        return Record(topic, 0, off, ts_ms, key.encode(), orjson.dumps(value))

    def product(self, sku: str, color: str, shop: str = "S1") -> None:
        value = {"event_id": f"p-{sku}", "ts": T * 1000 - 86_400_000, "shop_id": shop,
                 "event_type": "product_upsert", "sku": sku, "factory_id": "F001",
                 "category": "袜子", "color": color, "size": "M", "list_price": 15.0,
                 "lead_time_days": 3, "moq": 100}
        assert self.engine.apply_product(
            self._record("shop.products", sku, value, T * 1000)) is None

    def order(self, shop: str, sku: str, region: str, at_s: int, cancel: bool = False) -> None:
        self.n += 1
        oid = f"O-{shop}-{sku}-{region}"
        value = {"event_id": f"e{self.n}", "ts": at_s * 1000, "shop_id": shop,
                 "event_type": "order_cancelled" if cancel else "order_placed",
                 "order_id": oid, "region": region, "buyer_id": f"b{self.n}",
                 "lines": [{"sku": sku, "qty": 2, "unit_price": 15.0}]}
        self.pending.append(self._record("shop.orders", oid, value, at_s * 1000))

    def flush(self) -> None:
        process(self.engine, self.pending)
        self.pending = []
        batch = self.engine.flush_batch()
        self.store.write(batch)
        self.engine.flushed(batch)


def _python_fold(client: Any, db: str, seconds: int) -> set[tuple[Any, ...]]:
    """The pure fold (streams.core.kanon) of the cells ClickHouse holds, per window."""
    cells = client.query(
        "SELECT toUnixTimestamp(window_start), toUnixTimestamp(window_end), category, color, "
        "size, price_band, region, orders, units, gmv_e4, cancelled_units, returned_units, "
        f"pageviews, shops FROM {db}.demand_cells FINAL WHERE window_seconds = {{s:UInt32}}",
        parameters={"s": seconds}).result_rows
    k = market.current_k(client, db)
    out = set()
    for r in fold([Row(tuple(c[2:7]), tuple(c[7:13]), frozenset(c[13]), group=(c[0], c[1]))
                   for c in cells], k):
        o, u, g, cu, ru, pv = r.measures
        out.add((*r.group, *r.key, r.level, o, u, g, cu, ru, u - cu - ru, pv))
    return out


def assert_stored_equals_the_query_time_fold(client: Any, db: str) -> None:
    market.refresh_periodic(client, db)  # daily windows and the rolling horizons
    for seconds in SIZES:
        got = stored_demand(client, db, seconds, 0, 2**31)
        assert got == oracle_demand(client, db, seconds, 0, 2**31), seconds
        assert got == _python_fold(client, db, seconds), seconds
    assert stored_rolling(client, db) == oracle_rolling(client, db)
    # a cell shown as it is (level 0) has >= k shops in every family it has
    k = market.current_k(client, db)
    for seconds in SIZES:
        shops = {tuple(r[:6]): r[6] for r in client.query(
            "SELECT toUnixTimestamp(window_start), category, color, size, price_band, region, "
            f"shops FROM {db}.demand_cells FINAL WHERE window_seconds = {{s:UInt32}}",
            parameters={"s": seconds}).result_rows}
        for r in stored_demand(client, db, seconds, 0, 2**31):
            if r[7] == 0:
                assert all(n == 0 or n >= k for n in counts(shops[(r[0], *r[2:7])])), r


def _published_keys(client: Any, db: str, seconds: int) -> set[tuple[Any, ...]]:
    return {r[2:8] for r in stored_demand(client, db, seconds, T, T + 1)}


def test_late_corrections_move_a_key_across_fold_levels(engine_client: Any, db: str) -> None:
    """k = 3. Cell A (红, 浙江) sold by S1-S3: shown as it is. B (红, 广东) sold by S4 alone
    and C (蓝, 浙江) by S5 and S6: folded into the category. A cancel of S1 (a returns family
    of one shop) withholds everything of the window; cancels of S5 and S6 then let the
    category's fold (A, B, C) show again, A inside it. After every flush the stored fold is
    the query-time fold; no stale row of an earlier fold stays."""
    feed = Feed(engine_client, db)
    feed.product("SKU-R", "红")
    feed.product("SKU-B", "蓝")
    for shop in ("S1", "S2", "S3"):
        feed.order(shop, "SKU-R", "浙江", T + 10)
    feed.order("S4", "SKU-R", "广东", T + 20)
    for shop in ("S5", "S6"):
        feed.order(shop, "SKU-B", "浙江", T + 30)
    feed.flush()
    assert_stored_equals_the_query_time_fold(engine_client, db)
    category = ("袜子", "", "", "", "", 2)
    five = _published_keys(engine_client, db, 300)
    assert [k for k in five if k[5] == 0] == [k for k in five if k[4] == "浙江" and k[1] == "红"]
    assert len(five) == 2 and category in five  # A as it is, B and C in the category
    assert not any(k[4] == "广东" for k in five)  # B (one shop) is never a row of its own

    # later events move the watermark on; S1's cancel is 8 minutes late (inside lateness)
    feed.order("S2", "SKU-B", "江苏", T + 500)
    feed.flush()
    feed.order("S1", "SKU-R", "浙江", T + 15, cancel=True)
    feed.flush()
    assert_stored_equals_the_query_time_fold(engine_client, db)
    assert _published_keys(engine_client, db, 300) == set()  # the window: all withheld
    # the stored rows of the earlier fold are still there, and not shown
    assert engine_client.query(
        f"SELECT count() FROM {db}.market_cells WHERE window_seconds = 300 "
        "AND window_start = toDateTime({t:Int64}) AND fold_level < 4",
        parameters={"t": T}).result_rows[0][0] > 0

    feed.order("S5", "SKU-B", "浙江", T + 40, cancel=True)
    feed.order("S6", "SKU-B", "浙江", T + 50, cancel=True)
    feed.flush()
    assert_stored_equals_the_query_time_fold(engine_client, db)
    assert _published_keys(engine_client, db, 300) == {category}  # A, B, C: 6 + 3 shops


def test_the_windows_a_publish_refreshed_wait_for_the_market_refresher(
    engine_client: Any, db: str
) -> None:
    """A publish hands the windows shorter than a day it refreshed to the market
    refresher (``market_pending``) instead of re-folding them itself; ``refresh_pending``
    folds them, and what a failed fold left undone stays pending."""
    feed = Feed(engine_client, db)
    feed.product("SKU-R", "红")
    for shop in ("S1", "S2", "S3"):
        feed.order(shop, "SKU-R", "浙江", T + 10)
    feed.flush()
    pending = feed.store.market_pending
    assert {s for s, _ in pending.take()} == {300, 3600}  # the day: the periodic part's
    feed.order("S4", "SKU-R", "浙江", T + 20)
    feed.flush()
    assert len(pending) == 2
    assert stored_demand(engine_client, db, 300, 0, 2**31) != oracle_demand(
        engine_client, db, 300, 0, 2**31)  # not folded by the flush

    class Away:
        def command(self, *a: Any, **k: Any) -> None:
            raise ConnectionError("ClickHouse away")

    with pytest.raises(ConnectionError):
        market.refresh_pending(Away(), db, pending)
    assert len(pending) == 2  # given back
    assert market.refresh_pending(engine_client, db, pending) == 2
    assert len(pending) == 0
    for seconds in (300, 3600):
        assert stored_demand(engine_client, db, seconds, 0, 2**31) == oracle_demand(
            engine_client, db, seconds, 0, 2**31)


def test_simulated_flushes_and_their_late_corrections(engine_client: Any, db: str) -> None:
    """Three hours of simulated shops over local midnight, flushed in uneven cuts, then page
    views and orders again 40 minutes behind (corrections inside the horizon): the stored
    fold equals the query-time fold for every size and horizon, for k = 3 and, after k
    changes, for k = 2 (refolded at the next start: ensure_k)."""
    start_ms = (T - 3600) * 1000
    events = generate_history(5, start_ms, 3, orders_per_hour=400, n_shops=20,
                              n_skus=300, n_regions=3)
    feed = Feed(engine_client, db)
    products, demand = [], []
    for ev in events:
        part = 0 if ev.topic == "shop.products" else zlib.crc32(ev.key.encode()) % 3
        off = feed.offsets.get(f"{ev.topic}/{part}", 0)
        feed.offsets[f"{ev.topic}/{part}"] = off + 1
        rec = Record(ev.topic, part, off, ev.ts_ms, ev.key.encode(), orjson.dumps(ev.value))
        (products if ev.topic == "shop.products" else demand).append(rec)
    for rec in products:
        assert feed.engine.apply_product(rec) is None
    n = len(demand)
    cuts = [0, n // 10, n // 3, n // 3 + 50, 2 * n // 3, n]
    for lo, hi in itertools.pairwise(cuts):
        feed.pending = demand[lo:hi]
        feed.flush()
    before = stored_demand(engine_client, db, 300, 0, 2**31)
    assert_stored_equals_the_query_time_fold(engine_client, db)
    newest = max(r.timestamp or 0 for r in demand)
    again = [Record(r.topic, r.partition, 10**7 + i, r.timestamp, r.key, r.value.replace(
        b'"event_id":"', b'"event_id":"again-')) for i, r in enumerate(demand)
        if r.topic in ("shop.pageviews", "shop.orders")
        and newest - 45 * 60_000 < (r.timestamp or 0) < newest - 40 * 60_000]
    assert len(again) > 20
    for lo in range(0, len(again), 7):
        feed.pending = again[lo : lo + 7]
        feed.flush()
    assert stored_demand(engine_client, db, 300, 0, 2**31) != before
    assert_stored_equals_the_query_time_fold(engine_client, db)
    levels = {r[7] for s in SIZES for r in stored_demand(engine_client, db, s, 0, 2**31)}
    assert {0, 1, 2, 3} <= levels  # the simulated market has rows of each kind

    # k changes (a process starts with C2M_MIN_SHOPS_PER_SIGNAL=2): refolded at start
    feed.store.record_settings({"min_shops": 2})
    assert market.ensure_k(engine_client, db)
    assert not market.ensure_k(engine_client, db)
    assert_stored_equals_the_query_time_fold(engine_client, db)
    assert engine_client.query(
        f"SELECT DISTINCT k FROM {db}.market_cells").result_rows == [(2,)]

    # a rebuild (serving.rebuild, c2m's upgrade path) gives the same rows
    want = {s: stored_demand(engine_client, db, s, 0, 2**31) for s in SIZES}
    engine_client.command(f"TRUNCATE TABLE {db}.market_cells")
    engine_client.command(f"TRUNCATE TABLE {db}.market_rolling_cells")
    feed.store.rebuild_serving()
    assert {s: stored_demand(engine_client, db, s, 0, 2**31) for s in SIZES} == want
    assert stored_rolling(engine_client, db) == oracle_rolling(engine_client, db)


def test_a_database_with_data_upgrades_to_the_stored_fold(
    engine_client: Any, db: str
) -> None:
    """Migration 0011 on a database of migration 0010 that holds cells (made here from one
    built to 0011: its market tables dropped, the 0010 views back, 0011 unrecorded): the
    market views give what the query-time views gave before it."""
    feed = Feed(engine_client, db)
    start_ms = (T - 7200) * 1000
    for ev in generate_history(8, start_ms, 3, orders_per_hour=300):
        rec = feed._record(ev.topic, ev.key, ev.value, ev.ts_ms)
        if ev.topic == "shop.products":
            assert feed.engine.apply_product(rec) is None
        else:
            feed.pending.append(rec)
            if len(feed.pending) >= 3000:
                feed.flush()
    feed.flush()
    for table in ("market_cells", "market_rolling_cells"):
        engine_client.command(f"DROP TABLE {db}.{table}")
    engine_client.command(f"DELETE FROM {db}.schema_migrations WHERE version = 11")
    (privacy,) = [m for m in load() if m.version == 10]
    for stmt in privacy.statements:
        if stmt.startswith("CREATE OR REPLACE VIEW {db}.market_"):
            engine_client.command(stmt.replace("{db}", db))
    engine_client.command(f"DELETE FROM {db}.database_info WHERE name = 'market_min_shops'")
    before = {s: engine_client.query(
        f"SELECT count() FROM {db}.market_demand(seconds={s}, from_s=0, to_s=2147483648)"
    ).result_rows[0][0] for s in SIZES}
    want = {s: oracle_demand(engine_client, db, s, 0, 2**31) for s in SIZES}
    rolling = oracle_rolling(engine_client, db)
    assert all(want.values()) and rolling
    assert before == {s: len(want[s]) for s in SIZES}  # the views were the query-time fold
    assert migrate(engine_client, db, timezone=TZ) == [11]
    assert {s: stored_demand(engine_client, db, s, 0, 2**31) for s in SIZES} == want
    assert stored_rolling(engine_client, db) == rolling
