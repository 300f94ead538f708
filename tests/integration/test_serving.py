"""The serving layer (issue 17) and the market's time zone in ClickHouse (issue 23), on a
real chDB engine: refreshed rows equal the per-partition definition through corrections and
any interleaving of writers, a rebuild equals the refresh across a daylight-saving change,
an existing database upgrades with every number unchanged, and a database keeps its zone."""

from __future__ import annotations

import copy
import itertools
import zlib
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from streams.clickhouse import serving
from streams.clickhouse.migrations import load, migrate, migrations_dir
from streams.clickhouse.store import CHECKPOINT_COLUMNS, DemandStore
from streams.core.calendar import MarketCalendar
from streams.core.catalog import UNKNOWN, Catalog
from streams.core.config import EngineConfig
from streams.core.dedup import id_hash
from streams.core.engine import DemandEngine, FlushBatch, Record
from streams.core.kanon import shop_tag
from streams.errors import ConfigError
from streams.sim.model import generate_history
from tests import oracle
from tests.helpers.engine import process

pytestmark = pytest.mark.integration

_names = itertools.count()

#: final numbers from the per-partition rows, as demand_by_attribute computed them before
#: the serving tables (migration 0003): the reference the serving rows must equal
REFERENCE = """
SELECT d.window_seconds, toUnixTimestamp(d.window_start), d.category, d.color, d.size,
       d.price_band, d.region, d.o, d.u, d.g, d.c, d.r, d.pv, ifNull(v.n, 0)
FROM (SELECT window_seconds, window_start, category, color, size, price_band, region,
             sum(o) o, sum(u) u, sum(g) g, sum(c) c, sum(r) r, sum(pv) pv
      FROM (SELECT window_seconds, window_start, category, color, size, price_band, region,
                   source_topic, source_partition,
                   argMax(orders, version) o, argMax(units, version) u,
                   argMax(gmv_e4, version) g, argMax(cancelled_units, version) c,
                   argMax(returned_units, version) r, argMax(pageviews, version) pv
            FROM {db}.demand_state GROUP BY ALL)
      GROUP BY ALL) d
LEFT JOIN (SELECT window_seconds, window_start, category, color, size, price_band, region,
                  uniqExact(visitor_hash) n FROM {db}.visitor_cells GROUP BY ALL) v
USING (window_seconds, window_start, category, color, size, price_band, region)
"""
SERVED = """
SELECT window_seconds, toUnixTimestamp(window_start), category, color, size, price_band,
       region, orders, units, toInt64(round(gmv * 10000)), cancelled_units, returned_units,
       pageviews, unique_visitors
FROM {db}.demand_by_attribute
"""
SKU_REFERENCE = """
SELECT sku, toUnixTimestamp(hour_start), sum(o), sum(u), sum(c), sum(r), sum(pv), sum(sh),
       sum(rc), max(ct), argMax(oh, (ct, oh))
FROM (SELECT sku, hour_start, source_topic, source_partition, argMax(orders, version) o,
             argMax(units, version) u, argMax(cancelled_units, version) c,
             argMax(returned_units, version) r, argMax(pageviews, version) pv,
             argMax(restock_shipped, version) sh, argMax(restock_received, version) rc,
             argMax(count_ts, version) ct, argMax(count_on_hand, version) oh
      FROM {db}.sku_state GROUP BY ALL)
GROUP BY sku, hour_start
"""
SKU_SERVED = """
SELECT sku, toUnixTimestamp(hour_start), orders, units, cancelled_units, returned_units,
       pageviews, restock_shipped, restock_received, count_ts, count_on_hand
FROM {db}.sku_hourly
"""


def assert_rolling_is_the_hourly_sum(client: Any, db: str) -> None:
    """demand_rolling's 24 h and 7 d (the 7 d made of whole local days from the daily rows
    and the hours at its ends) equal the hourly rows of their range."""
    rolling = client.query(
        f"SELECT horizon, toUnixTimestamp(as_of), category, color, size, price_band, region, "
        f"units, pageviews FROM {db}.demand_rolling WHERE horizon IN ('24h', '7d')").result_rows
    assert rolling
    for horizon, hours in (("24h", 24), ("7d", 168)):
        rows = [r for r in rolling if r[0] == horizon]
        as_of = rows[0][1]
        want = client.query(
            "SELECT category, color, size, price_band, region, sum(units), sum(pageviews) "
            f"FROM {db}.demand_by_attribute WHERE window_seconds = 3600 "
            "AND toUnixTimestamp(window_start) >= {lo:Int64} "
            "AND toUnixTimestamp(window_start) < {hi:Int64} GROUP BY ALL",
            parameters={"lo": as_of - hours * 3600, "hi": as_of}).result_rows
        assert {tuple(r[2:]) for r in rows} == {tuple(r) for r in want}, horizon


def _set(client: Any, sql: str, db: str) -> set[tuple[Any, ...]]:
    return {tuple(r) for r in client.query(sql.replace("{db}", db)).result_rows}


@pytest.fixture
def db(engine_client: Any) -> Iterator[str]:
    name = f"srv{next(_names)}"
    yield name
    engine_client.command(f"DROP DATABASE IF EXISTS {name}")


def _history(hours: float, start_ms: int, seed: int = 5) -> tuple[list[Any], list[Record]]:
    events = generate_history(seed, start_ms, hours, orders_per_hour=300)
    offsets: dict[tuple[str, int], int] = {}
    products, demand = [], []
    for ev in events:
        part = 0 if ev.topic == "shop.products" else zlib.crc32(ev.key.encode()) % 3
        off = offsets.get((ev.topic, part), 0)
        offsets[(ev.topic, part)] = off + 1
        rec = Record(ev.topic, part, off, ev.ts_ms, ev.key.encode(), orjson.dumps(ev.value))
        (products if ev.topic == "shop.products" else demand).append(rec)
    return products, demand


def _engine(products: list[Record], tz: str) -> DemandEngine:
    engine = DemandEngine(EngineConfig(timezone=tz), Catalog())
    for rec in products:
        assert engine.apply_product(rec) is None
    return engine


def _flushes(engine: DemandEngine, demand: list[Record], size: int) -> Iterator[FlushBatch]:
    for i in range(0, len(demand), size):
        process(engine, demand[i : i + size])
        batch = engine.flush_batch()
        yield batch
        engine.flushed(batch)


def _orders_again(records: list[Record], n: int) -> list[Record]:
    """The first ``n`` orders of ``records`` sent again as new orders (new event and order
    ids, the same event time): a late correction of the hours they fall in."""
    return [Record(r.topic, r.partition, 10**6 + i, r.timestamp, r.key, r.value.replace(
        b'"event_id":"', b'"event_id":"again-').replace(b'"order_id":"', b'"order_id":"again-'))
        for i, r in enumerate(records) if b'"order_placed"' in r.value][:n]


def test_serving_rows_equal_the_partition_rows_through_corrections(
    engine_client: Any, db: str
) -> None:
    """Simulated traffic (late, out-of-order, corrections inside the horizon), flushed in
    uneven cuts: every serving table and view equals the per-partition definition, and the
    demand equals the oracle in the market's zone."""
    migrate(engine_client, db, timezone="Asia/Shanghai")
    store = DemandStore(engine_client, db, MarketCalendar("Asia/Shanghai"))
    start = 1_794_322_800_000  # 2026-11-10T15:00Z = 23:00 China time: over local midnight
    products, demand = _history(3, start)
    # a correction: page views 40 minutes behind the newest, inside the 48 h horizon
    late = [Record(r.topic, r.partition, 10**6 + i, r.timestamp, r.key, r.value.replace(
        b'"event_id":"', b'"event_id":"again-')) for i, r in enumerate(demand[:50])
        if r.topic == "shop.pageviews"]
    engine = _engine(products, "Asia/Shanghai")
    for batch in _flushes(engine, demand, 1777):
        store.write(batch)
    before = _set(engine_client, SERVED, db)
    for batch in _flushes(engine, late, 10):
        store.write(batch)
    after = _set(engine_client, SERVED, db)
    assert after != before  # the corrections changed served rows
    assert after == _set(engine_client, REFERENCE, db)
    assert _set(engine_client, SKU_SERVED, db) == _set(engine_client, SKU_REFERENCE, db)
    shops: dict[tuple[Any, ...], dict[str, set[str]]] = {}
    want = oracle.demand(
        [orjson.loads(r.value) for r in products],
        [(r.topic, r.partition, orjson.loads(r.value)) for r in [*demand, *late]],
        timezone="Asia/Shanghai", shops=shops)
    got = {r[:7]: r[7:13] for r in after}
    assert set(got) == set(want)
    for key, w in want.items():
        assert got[key][:2] == (w["orders"], w["units"]) and got[key][5] == w["pageviews"]
    # every cell's contributors (issue 22): the shops that sold in it and that were viewed
    served_shops = {tuple(r[:7]): sorted(r[7]) for r in engine_client.query(
        "SELECT window_seconds, toUnixTimestamp(window_start), category, color, size, "
        f"price_band, region, shops FROM {db}.demand_cells FINAL").result_rows}
    assert served_shops == {
        k: sorted(shop_tag(id_hash(s), fam)
                  for fam, role in enumerate(("orders", "views", "returns")) for s in c[role])
        for k, c in shops.items()
    }
    assert max(len(v) for v in served_shops.values()) >= 4
    # 双11 (China time) is one daily row per cell, starting at 11-11 00:00 +08:00
    days = {r[1] for r in after if r[0] == 86_400}
    assert {datetime.fromtimestamp(d, UTC).isoformat() for d in days} == {
        "2026-11-09T16:00:00+00:00", "2026-11-10T16:00:00+00:00"}
    local = engine_client.query(
        f"SELECT count(), sum(units) FROM {db}.demand_by_attribute "
        "WHERE window_seconds = 86400 AND window_start = '2026-11-11 00:00:00'").result_rows
    assert local[0][1] == sum(w["units"] for k, w in want.items()
                              if k[0] == 86_400 and k[1] == 1_794_326_400)
    tz = engine_client.query(f"SELECT DISTINCT tz FROM {db}.demand_by_attribute").result_rows
    assert tz == [("Asia/Shanghai",)]
    assert_rolling_is_the_hourly_sum(engine_client, db)


def test_any_interleaving_of_two_writers_leaves_the_final_row(
    engine_client: Any, db: str
) -> None:
    """Two processes write their own partitions of the same cell to one ClickHouse and each
    refreshes after its insert. A refresh reads, then inserts: with two writers its insert
    can land after a newer refresh of the other. Whatever the order of the inserts and of
    the reads, and whichever refresh lands last, the row left is the sum of both writers'
    newest values: the version (sum over partitions of the newest version read) ranks the
    refresh that read more above the one that read less."""
    migrate(engine_client, db)
    cell = ("袜子", "雾霾蓝", "1-3岁", "10-20", "浙江")
    w = 1_794_326_400
    cols = ["source_topic", "source_partition", "window_seconds", "window_start", "category",
            "color", "size", "price_band", "region", "orders", "units", "gmv_e4",
            "cancelled_units", "returned_units", "pageviews", "version"]
    select = serving.refresh_cells_sql(db).split("\n", 1)[1]  # the refresh's SELECT alone

    def rows(topic: str, units: int, version: int) -> list[tuple[Any, ...]]:
        return [(topic, 0, 300, w, *cell, 1, units, units * 10_000, 0, 0, 0, version)]

    steps = {
        "A": [rows("shop.orders", 3, 10), rows("shop.orders", 5, 20)],
        "B": [rows("shop.pageviews", 0, 9), rows("shop.pageviews", 0, 11)],
    }
    tried = 0
    for perm in itertools.permutations([("A", 0), ("A", 1), ("B", 0), ("B", 1)]):
        if [i for who, i in perm if who == "A"] != [0, 1] or \
                [i for who, i in perm if who == "B"] != [0, 1]:
            continue  # each writer's own flushes stay in order
        engine_client.command(f"TRUNCATE TABLE {db}.demand_state")
        engine_client.command(f"TRUNCATE TABLE {db}.demand_cells")
        reads = []
        for who, i in perm:
            r = steps[who][i]
            engine_client.insert(f"{db}.demand_state", r, column_names=cols)
            todo = serving.RefreshSet()
            todo.add(r, [])
            params, _ = todo.params(MarketCalendar())
            assert params is not None
            reads.append(engine_client.query(select, parameters=params).result_rows)
        for got in reversed(reads):  # the stalest read lands last
            engine_client.insert(f"{db}.demand_cells", got, column_names=serving.CELL_COLUMNS)
        final = engine_client.query(
            f"SELECT orders, units FROM {db}.demand_by_attribute").result_rows
        assert final == [(2, 5)], perm  # newest of A (1 order, 5 units) + newest of B (1, 0)
        tried += 1
    assert tried == 6


@pytest.mark.parametrize(("tz", "start_ms"), [
    ("Europe/Berlin", 1_792_875_600_000),   # 2026-10-24T21:00Z: the night clocks go back
    ("Asia/Kolkata", 1_794_326_400_000),
    ("UTC", 1_794_326_400_000),
])
def test_rebuild_equals_the_refreshed_rows_and_window_ends(
    engine_client: Any, db: str, tz: str, start_ms: int
) -> None:
    """The SQL rebuild (upgrades, ``c2m db rebuild-serving``) gives the rows the flush
    refresh gave, window ends included (a 25-hour day in Berlin)."""
    migrate(engine_client, db, timezone=tz)
    products, demand = _history(30, start_ms, seed=9)
    engine = _engine(products, tz)
    store = DemandStore(engine_client, db, engine.calendar)
    for batch in _flushes(engine, demand, 4000):
        store.write(batch)
    cols = ("window_seconds, toUnixTimestamp(window_start), toUnixTimestamp(window_end), "
            "category, color, size, price_band, region, orders, units, gmv_e4, "
            "cancelled_units, returned_units, pageviews, unique_visitors")
    query = f"SELECT {cols} FROM {db}.demand_cells FINAL"
    refreshed = _set(engine_client, query, db)
    days = {(r[1], r[2]) for r in refreshed if r[0] == 86_400}
    if tz == "Europe/Berlin":
        assert 25 * 3600 in {e - s for s, e in days}
    engine_client.command(f"TRUNCATE TABLE {db}.demand_cells")
    engine_client.command(f"TRUNCATE TABLE {db}.sku_hours")
    store.rebuild_serving()
    assert _set(engine_client, query, db) == refreshed
    assert _set(engine_client, SKU_SERVED, db) == _set(engine_client, SKU_REFERENCE, db)
    assert_rolling_is_the_hourly_sum(engine_client, db)


def test_a_database_from_before_the_serving_layer_upgrades_with_the_same_numbers(
    engine_client: Any, db: str, tmp_path: Path
) -> None:
    """Migration 0007 on a database that holds weeks of data written by the old store
    (migrations 1-6): every view gives the numbers it gave before, sku_state is re-sorted
    by hour, and new flushes refresh the serving rows."""
    upto_6 = tmp_path / "upto_6"
    upto_6.mkdir()
    for path in sorted(migrations_dir().glob("*.sql")):
        if int(path.name[:4]) <= 6:
            (upto_6 / path.name).write_text(path.read_text("utf-8"), "utf-8")
    assert migrate(engine_client, db, upto_6) == [1, 2, 3, 4, 5, 6]
    engine_client.insert(f"{db}.pipeline_settings", [["window_seconds.300", 300],
                                                     ["window_seconds.3600", 3600],
                                                     ["window_seconds.86400", 86400]],
                         column_names=["name", "value"])
    products, demand = _history(26, 1_794_322_800_000)
    engine = _engine(products, "UTC")
    old_store = DemandStore(engine_client, db)
    for batch in _flushes(engine, demand, 2500):
        # what a worker of migration 6 wrote: visitor rows without their windows
        visitor_rows, batch.visitor_rows = batch.visitor_rows, []
        engine_client.insert(f"{db}.visitor_feed", [r[:-1] for r in visitor_rows],
                             column_names=["window_seconds", "window_start", "category",
                                           "color", "size", "price_band", "region",
                                           "visitor_hashes"])
        batch.rows, rows = [], batch.rows
        engine_client.insert(f"{db}.demand_state", rows, column_names=[
            "source_topic", "source_partition", "window_seconds", "window_start", "category",
            "color", "size", "price_band", "region", "orders", "units", "gmv_e4",
            "cancelled_units", "returned_units", "pageviews", "version"])
        sku_rows, batch.sku_rows = batch.sku_rows, []
        engine_client.insert(f"{db}.sku_state", sku_rows, column_names=[
            "source_topic", "source_partition", "sku", "hour_start", "orders", "units",
            "cancelled_units", "returned_units", "pageviews", "restock_shipped",
            "restock_received", "count_ts", "count_on_hand", "version"])
        old_store.client.insert(f"{db}.checkpoints", [
            [c.topic, c.partition, c.position, c.max_ts, c.consumed, c.processed,
             c.dead_lettered, c.duplicates, c.late, c.max_ts - 600_000]
            for c in batch.checkpoints], column_names=[
            "source_topic", "source_partition", "position", "max_ts", "consumed", "processed",
            "dead_lettered", "duplicates", "late", "watermark"])
    views = {
        "demand": SERVED,
        "sku": SKU_SERVED,
        "progress": f"SELECT source_topic, source_partition, last_position, max_ts, watermark, "
                    f"consumed FROM {db}.source_progress",
        "rolling": f"SELECT horizon, toUnixTimestamp(as_of), category, color, size, "
                   f"price_band, region, orders, units, pageviews FROM {db}.demand_rolling",
    }
    before = {k: _set(engine_client, v, db) for k, v in views.items()}
    assert all(before.values())
    # a legacy database is UTC: it will not open in another zone
    with pytest.raises(ConfigError, match="holds windows in time zone UTC"):
        migrate(engine_client, db, timezone="Asia/Shanghai")
    assert migrate(engine_client, db, timezone="UTC") == [
        m.version for m in load() if m.version > 6]
    after = {k: _set(engine_client, v, db) for k, v in views.items()}
    for k in views:
        assert after[k] == before[k], k
    key = engine_client.query(
        "SELECT sorting_key FROM system.tables WHERE database = {d:String} "
        "AND name = 'sku_state'", parameters={"d": db}).result_rows[0][0]
    assert key == "hour_start, sku, source_topic, source_partition"
    # the next flushes (after the upgrade) keep the serving rows equal to the definition
    more = _history(28, 1_794_322_800_000)[1][len(demand):]
    store = DemandStore(engine_client, db)
    for batch in _flushes(engine, more, 3000):
        store.write(batch)
    assert _set(engine_client, SERVED, db) == _set(engine_client, REFERENCE, db)
    assert migrate(engine_client, db, timezone="UTC") == []


def test_a_database_keeps_its_time_zone(engine_client: Any, db: str) -> None:
    migrate(engine_client, db, timezone="Asia/Shanghai")
    with pytest.raises(ConfigError) as err:
        migrate(engine_client, db, timezone="Europe/Berlin")
    message = str(err.value)
    assert "holds windows in time zone Asia/Shanghai" in message
    assert "C2M_TIMEZONE=Asia/Shanghai" in message and "replay" in message
    assert migrate(engine_client, db, timezone="Asia/Shanghai") == []


def test_flushes_published_together_equal_the_definition_and_checkpoint_only_then(
    engine_client: Any, db: str
) -> None:
    """Flushes written without publishing (a backlog being worked off) leave no checkpoint
    and no serving row behind (a restart would restore from before them); one publish then
    refreshes every cell and SKU hour they wrote, corrections included, to the
    per-partition definition, and writes their checkpoints."""
    migrate(engine_client, db, timezone="Asia/Shanghai")
    store = DemandStore(engine_client, db, MarketCalendar("Asia/Shanghai"))
    products, demand = _history(2, 1_794_322_800_000, seed=11)
    late = [Record(r.topic, r.partition, 10**6 + i, r.timestamp, r.key, r.value.replace(
        b'"event_id":"', b'"event_id":"again-')) for i, r in enumerate(demand[:40])
        if r.topic == "shop.pageviews"]
    engine = _engine(products, "Asia/Shanghai")
    cfg = EngineConfig(timezone="Asia/Shanghai")
    flushes = list(_flushes(engine, demand, 1500))
    for batch in flushes[:2]:
        store.write(batch)  # published one by one
    first = _set(engine_client, SERVED, db)
    checkpoints = {(t, p): store.load_partition(t, p, 2**62, cfg) for t, p in engine.states}
    assert first and all(checkpoints.values())
    for batch in [*flushes[2:], *_flushes(engine, late, 7)]:
        store.write(batch, publish=False)
    # nothing of the held flushes is served or checkpointed yet
    assert _set(engine_client, SERVED, db) == first
    assert _set(engine_client, REFERENCE, db) != first
    for (t, p), snap in checkpoints.items():
        again = store.load_partition(t, p, 2**62, cfg)
        assert again is not None and snap is not None
        assert again.checkpoint == snap.checkpoint
    store.publish()
    assert _set(engine_client, SERVED, db) == _set(engine_client, REFERENCE, db)
    assert _set(engine_client, SKU_SERVED, db) == _set(engine_client, SKU_REFERENCE, db)
    for (t, p), st in engine.states.items():
        snap = store.load_partition(t, p, 2**62, cfg)
        assert snap is not None and snap.checkpoint.position == st.position


def test_checkpoints_name_the_hours_a_correction_changed_and_kept_inputs_follow(
    engine_client: Any, db: str
) -> None:
    """Every checkpoint row lists the hours its publish refreshed (migration 0012): the
    checkpoints after the positions a reader saw name exactly the hours that late orders
    changed since, and the alert service's kept inputs, reading only those hours again,
    equal a whole load. A partition whose seen checkpoint is gone (reset) makes the reader
    load everything."""
    from streams.clickhouse.alerts import AlertStore
    from streams.core.alerting.inputs import DAY, HOUR, InputCache, settled_before

    migrate(engine_client, db, timezone="Asia/Shanghai")
    store = DemandStore(engine_client, db, MarketCalendar("Asia/Shanghai"))
    alerts = AlertStore(engine_client, db)
    start = 1_794_322_800_000
    products, demand = _history(3, start, seed=13)
    late = _orders_again(demand[:400], 12)
    assert late
    engine = _engine(products, "Asia/Shanghai")
    for batch in _flushes(engine, demand, 1777):
        store.write(batch)
    horizon = 48 * HOUR
    lo, hi = start // 1000 // HOUR * HOUR - 3 * DAY, (start // 1000 + 4 * HOUR) // HOUR * HOUR

    def marks() -> dict[tuple[str, int], int]:
        return {tp: p.watermark_ms for tp, p in alerts.partition_progress().items()}

    cache = InputCache()
    m0 = marks()
    settled0 = settled_before(m0, [], horizon)
    assert cache.plan(lo, hi, lo, settled0, m0) is None
    seen0 = alerts.checkpoint_positions()
    whole0 = alerts.load_inputs(lo, hi, lo)
    cache.take(lo, hi, lo, None, copy.deepcopy(whole0), m0, settled0, seen=seen0)
    assert alerts.changed_hours(seen0) == (seen0, set())  # nothing since

    for batch in _flushes(engine, late, 5):
        store.write(batch)
    changes = alerts.changed_hours(cache.seen)
    assert changes is not None
    seen1, changed = changes
    assert seen1 == alerts.checkpoint_positions() != seen0
    assert changed == {r.timestamp // 1000 // HOUR * HOUR for r in late}
    m1 = marks()
    settled1 = settled_before(m1, [], horizon)
    begin = cache.plan(lo, hi, lo, settled1, m1)
    assert begin is not None
    begin, also = cache.partial(begin, changed)
    assert begin == hi and also == sorted(changed)  # no new hour: the changed ones only
    loaded = alerts.load_inputs(begin, hi, None, also)
    got = cache.take(lo, hi, lo, begin, loaded, m1, settled1, also, seen1)
    whole1 = alerts.load_inputs(lo, hi, lo)
    assert whole1 != whole0  # the late orders changed inputs
    assert got == whole1

    # a checkpoint row from code before migration 0012 (a process not yet upgraded) says
    # nothing of what changed; a row at the seen position written later is another row
    (topic, partition), (position, _at) = next(iter(seen1.items()))
    old = engine_client.query(
        f"SELECT {', '.join(CHECKPOINT_COLUMNS)} FROM {db}.checkpoints "
        "WHERE source_topic = {t:String} AND source_partition = {p:UInt16} "
        "AND position = {v:UInt64}", parameters={"t": topic, "p": partition, "v": position}
    ).result_rows[0]
    engine_client.insert(f"{db}.checkpoints", [[*old[:2], position + 1, *old[3:]]],
                         column_names=CHECKPOINT_COLUMNS)
    assert alerts.changed_hours(seen1) is None
    engine_client.command(f"DELETE FROM {db}.checkpoints WHERE position = {{v:UInt64}} "
                          "AND source_partition = {p:UInt16}",
                          parameters={"v": position + 1, "p": partition})
    assert alerts.changed_hours(seen1) is not None
    engine_client.insert(f"{db}.checkpoints", [[*old, [], 1]],
                         column_names=[*CHECKPOINT_COLUMNS, "hours", "hours_known"])
    engine_client.command(f"OPTIMIZE TABLE {db}.checkpoints FINAL")  # the later row stays
    assert alerts.changed_hours(seen1) is None
    store.reset_partition(topic, partition)
    assert alerts.changed_hours(seen1) is None


def test_the_alert_inputs_equal_the_oracle_through_a_correction(
    engine_client: Any, db: str
) -> None:
    """``AlertStore.load_inputs`` (SKU hours, cell orders per key, their shops: the alert
    rules' whole input) equals an independent aggregation of the raw events
    (tests/signals/reference.py) for a span, for a span with restock movements before
    it and for the changed hours alone, after a correction of already flushed hours."""
    from streams.clickhouse.alerts import AlertStore
    from streams.sim.model import HOUR_MS, SimEvent
    from tests.helpers.alert_inputs import load, load_also
    from tests.signals.reference import reference_inputs

    migrate(engine_client, db, timezone="Asia/Shanghai")
    store = DemandStore(engine_client, db, MarketCalendar("Asia/Shanghai"))
    alerts = AlertStore(engine_client, db)
    start = 1_794_322_800_000
    products, demand = _history(30, start, seed=21)
    late = _orders_again(demand[-3000:], 40)
    # orders of a SKU the catalog does not know: its cells count under UNKNOWN, which no
    # rule reads (the oracle knows only catalog SKUs: its SKU hours are compared apart)
    unknown = []
    for i, r in enumerate(x for x in demand if b'"order_placed"' in x.value):
        if i % 97 == 0:
            v = orjson.loads(r.value)
            v["event_id"], v["order_id"] = f"nosku-{i}", f"nosku-{i}"
            for line in v["lines"]:
                line["sku"] = "NO-SUCH-SKU"
            unknown.append(Record(r.topic, r.partition, 2 * 10**6 + i, r.timestamp, r.key,
                                  orjson.dumps(v)))
    engine = _engine(products, "Asia/Shanghai")
    for batch in _flushes(engine, [*demand, *late, *unknown], 2111):
        store.write(batch)
    assert engine_client.query(
        f"SELECT sum(orders) FROM {db}.demand_cells FINAL WHERE window_seconds = 3600 "
        "AND category = {u:String}", parameters={"u": UNKNOWN}).result_rows[0][0] > 0

    def events(records: list[Record]) -> list[SimEvent]:
        return [SimEvent(r.topic, r.key.decode(), orjson.loads(r.value), r.timestamp)
                for r in records]

    def loaded(*args: Any) -> Any:
        got = alerts.load_inputs(*args)
        for hours in got.sku_hours.values():  # plain tuples: the collector untracks them
            assert all(type(h) is tuple and all(type(x) is int for x in h)
                       for h in hours.values())
        assert all(type(t) is frozenset for v in got.order_shops.values() for t in v.values())
        assert got.sku_hours.pop("NO-SUCH-SKU", None)
        return got

    truth = reference_inputs(events([*products, *demand, *late]))
    assert truth.order_shops and any(h.shipped or h.received
                                     for v in truth.sku_hours.values() for h in v.values())
    lo = start // 1000 // 3600 * 3600 + 12 * 3600
    hi = (start + 30 * HOUR_MS) // 1000 // 3600 * 3600
    for span in ((lo, hi, None), (lo, hi, lo - 10 * 3600), (start // 1000 - 3600, hi, None)):
        assert loaded(*span) == load(truth, *span), span
    changed = sorted({r.timestamp // 1000 // 3600 * 3600 for r in late})
    assert changed and changed[0] < hi - 3600
    assert loaded(hi, hi, None, changed) == load_also(truth, hi, hi, changed)
    # hours asked for twice (in the span and among ``also``) count once
    assert loaded(lo, hi, None, changed) == load_also(truth, lo, hi, changed)
