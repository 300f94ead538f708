"""The store against a real ClickHouse engine (chDB): migrations, versioned rows, the view,
restore, and event values that never become SQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from streams.clickhouse.migrations import load, migrate, migrations_dir
from streams.clickhouse.store import DemandStore
from streams.core.config import EngineConfig
from streams.core.engine import Checkpoint, FlushBatch

pytestmark = pytest.mark.integration


@pytest.fixture
def client(engine_client: Any) -> Any:
    """chDB allows one engine path per process: every test shares it, each with its own
    database."""
    return engine_client


_counter = iter(range(1000))


@pytest.fixture
def store(client: Any) -> Iterator[DemandStore]:
    db = f"t{next(_counter)}"
    migrate(client, db)
    yield DemandStore(client, db)
    client.command(f"DROP DATABASE IF EXISTS {db}")


W = 1_794_398_400  # a window start, epoch seconds
EVIL = ["'; DROP TABLE c2m.demand_state; --", "{t:String}", "\\'", "雾霾蓝", 'a"b', "🧦", "שלום"]


def _row(
    topic: str,
    part: int,
    cell: tuple[str, ...],
    measures: list[int],
    version: int,
    window: int = 300,
    start: int = W,
) -> tuple[Any, ...]:
    return (topic, part, window, start, *cell, *measures, version)


def test_migrations_are_idempotent(client: Any) -> None:
    assert migrate(client, "mig_once") == [m.version for m in load()]
    assert migrate(client, "mig_once") == []
    tables = {r[0] for r in client.query("SHOW TABLES FROM mig_once").result_rows}
    assert {
        "demand_state",
        "checkpoints",
        "late_events",
        "dedup_ids",
        "demand_by_attribute",
        "schema_migrations",
    } <= tables


def test_view_takes_latest_version_and_sums_partitions(store: DemandStore) -> None:
    cell = ("袜子", "雾霾蓝", "1-3岁", "10-20", "浙江")
    store.write(
        FlushBatch(
            [
                _row("shop.orders", 0, cell, [1, 2, 30000, 0, 0, 0], 10),
                _row("shop.orders", 1, cell, [5, 5, 50000, 0, 0, 0], 7),
                _row("shop.pageviews", 0, cell, [0, 0, 0, 0, 0, 40], 3),
            ],
            [],
        )
    )
    store.write(FlushBatch([_row("shop.orders", 0, cell, [3, 6, 90000, 1, 0, 0], 25)], []))
    store.write(FlushBatch([_row("shop.orders", 0, cell, [2, 4, 60000, 0, 0, 0], 20)], []))
    rows = store.client.query(
        f"SELECT orders, units, gmv, cancelled_units, net_units, pageviews, conversion_rate "
        f"FROM {store.db}.demand_by_attribute"
    ).result_rows
    assert rows == [(8, 11, 14.0, 1, 10, 40, 0.2)]


def test_attribute_values_are_data_not_sql(store: DemandStore) -> None:
    rows = [_row("shop.orders", 0, (v, v, v, "0-10", v), [1, 1, 1, 0, 0, 0], 1) for v in EVIL]
    store.write(FlushBatch(rows, [Checkpoint("shop.orders", 0, 1, W * 1000, 7, 7, 0, 0, 0)]))
    got = store.client.query(
        f"SELECT category, color, size, region FROM {store.db}.demand_by_attribute"
    ).result_rows
    assert sorted(r[0] for r in got) == sorted(EVIL)
    assert all(r[0] == r[1] == r[2] == r[3] for r in got)
    cfg = EngineConfig()
    loaded = store.load_partition("shop.orders", 0, 1, cfg)
    assert loaded is not None
    assert sorted(k[2] for k, _ in loaded.cells) == sorted(EVIL)
    top = store.top_cells(300, 100)
    assert len(top) == len(EVIL)


def test_restore_reads_the_state_as_of_the_checkpoint(store: DemandStore) -> None:
    cell = ("杯", "白", "均码", "0-10", "广东")
    cp1 = Checkpoint("shop.orders", 2, 100, W * 1000 + 5, 100, 90, 5, 5, 0)
    store.write(
        FlushBatch(
            [_row("shop.orders", 2, cell, [1, 1, 100, 0, 0, 0], 100)],
            [cp1],
            [("shop.orders", 2, W // 3600, [42], 100)],
        )
    )
    # a flush whose checkpoint never landed (crash between the writes)
    store.write(
        FlushBatch(
            [_row("shop.orders", 2, cell, [9, 9, 900, 0, 0, 0], 180)],
            [],
            [("shop.orders", 2, W // 3600, [43, 44], 180)],
        )
    )
    cfg = EngineConfig()
    loaded = store.load_partition("shop.orders", 2, 150, cfg)
    assert loaded is not None
    assert loaded.checkpoint == cp1
    assert loaded.cells == [((300, W, *cell), [1, 1, 100, 0, 0, 0])]
    assert loaded.dedup_ids == [(W // 3600, 42)]
    assert store.load_partition("shop.orders", 2, 99, cfg) is None
    assert store.load_partition("shop.orders", 3, 1000, cfg) is None


def test_pruning_keeps_the_latest_checkpoint_of_every_partition(store: DemandStore) -> None:
    from datetime import UTC, datetime, timedelta

    now = datetime.now(UTC)
    rows = [
        # partition 0: flushed for 20 days, last one an hour ago
        *(["shop.orders", 0, 100 + i, 0, 0, 0, 0, 0, 0, now - timedelta(days=age), -1]
          for i, age in enumerate((20, 10, 8, 3, 0.04))),
        # partition 1: idle for 25 days; its last checkpoint stays whatever its age
        ["shop.orders", 1, 5, 0, 0, 0, 0, 0, 0, now - timedelta(days=30), -1],
        ["shop.orders", 1, 7, 0, 0, 0, 0, 0, 0, now - timedelta(days=25), -1],
    ]
    store.client.insert(
        f"{store.db}.checkpoints", rows,
        column_names=["source_topic", "source_partition", "position", "max_ts", "consumed",
                      "processed", "dead_lettered", "duplicates", "late", "written_at",
                      "watermark"],
    )
    store.prune_checkpoints(7)
    left = sorted(store.client.query(
        f"SELECT source_partition, position FROM {store.db}.checkpoints"
    ).result_rows)
    assert left == [(0, 103), (0, 104), (1, 7)]
    store.prune_checkpoints(7)  # nothing more to do
    assert store.client.query(f"SELECT count() FROM {store.db}.checkpoints").result_rows == [(3,)]
    # restore still finds the latest checkpoint of the idle partition
    snap = store.load_partition("shop.orders", 1, 2**62, EngineConfig())
    assert snap is not None and snap.checkpoint.position == 7


def test_visitor_cells_upgrade_to_low_cardinality_keeps_every_row(
    client: Any, tmp_path: Path
) -> None:
    """Migration 0006 changes the type of visitor_cells' key columns on a database that
    already holds visitor rows: the rows read back the same, and new flushes still land."""
    upto_5 = tmp_path / "upto_5"
    upto_5.mkdir()
    for path in sorted(migrations_dir().glob("*.sql")):
        if int(path.name[:4]) <= 5:
            (upto_5 / path.name).write_text(path.read_text("utf-8"), "utf-8")
    db = "mig_visitors"
    assert migrate(client, db, upto_5) == [1, 2, 3, 4, 5]
    store = DemandStore(client, db)
    store.record_settings({"window_seconds.300": 300, "window_seconds.3600": 3600})
    cell = (300, W, "袜子", "雾霾蓝", "1-3岁", "10-20", "浙江")
    evil = (300, W + 300, *EVIL[:4], EVIL[4])
    client.insert(  # as a worker of migration 5 wrote them (no windows: sizes from settings)
        f"{db}.visitor_feed", [(*cell, [1, 2]), (*evil, [3])],
        column_names=["window_seconds", "window_start", "category", "color", "size",
                      "price_band", "region", "visitor_hashes"])
    query = (f"SELECT window_seconds, toUnixTimestamp(window_start), category, color, size, "
             f"price_band, region, visitor_hash FROM {db}.visitor_cells ORDER BY ALL")
    before = client.query(query).result_rows
    assert len(before) == 6  # three hashes, each in its 5-minute and its hourly window

    assert migrate(client, db) == [m.version for m in load() if m.version > 5]
    types = dict(client.query(
        "SELECT name, type FROM system.columns WHERE database = {db:String} "
        "AND table = 'visitor_cells'", parameters={"db": db}).result_rows)
    assert {types[c] for c in ("category", "color", "size", "region")} == {
        "LowCardinality(String)"}
    assert client.query(query).result_rows == before
    store.write(FlushBatch(rows=[], checkpoints=[], visitor_rows=[
        (*cell, [2, 4], [(300, W), (3600, W - W % 3600)])]))
    hourly = client.query(
        f"SELECT uniqExact(visitor_hash) FROM {db}.visitor_cells "
        "WHERE window_seconds = 3600 AND category = {c:String}", parameters={"c": "袜子"},
    ).result_rows
    assert hourly == [(3,)]  # 1, 2 and 4: the repeated hash counted once
    client.command(f"DROP DATABASE IF EXISTS {db}")


def test_packed_feed_windows_expand_to_the_rows_of_the_tuple_feeds(
    client: Any, tmp_path: Path
) -> None:
    """Migration 0015 packs the feeds' windows into one integer each: the same visitor and
    contributor rows written by a worker before it (windows as tuples) and through the
    store after it expand to the same ``visitor_cells`` and ``shop_cells`` rows, on a
    database upgraded with data in it. The windows cover a local day of 25 hours (Berlin,
    2026-10-25), a 5-minute window at the last second that fits 32 bits, and rows
    sharing and not sharing one windows list."""
    upto_14 = tmp_path / "upto_14"
    upto_14.mkdir()
    for path in sorted(migrations_dir().glob("*.sql")):
        if int(path.name[:4]) <= 14:
            (upto_14 / path.name).write_text(path.read_text("utf-8"), "utf-8")
    old, new = "mig_feeds_old", "mig_feeds_new"
    assert migrate(client, old, upto_14, timezone="Europe/Berlin")[-1] == 14
    migrate(client, new, timezone="Europe/Berlin")
    day = 1_792_879_200  # 2026-10-25 00:00 in Berlin (CEST), a day of 25 hours
    last = (1 << 32) - 300  # the last 5-minute window before 2106
    shared = [(300, day + 3600), (3600, day + 3600), (86400, day)]
    cell = ("袜子", "雾霾蓝", "1-3岁", "10-20", "浙江")
    visitors: list[tuple[Any, ...]] = [
        (300, day + 3600, *cell, [1, 2], shared),
        (300, day + 3600, *EVIL[:4], EVIL[4], [3], shared),
        (300, day + 90_000 - 300, *cell, [2**64 - 1],
         [(300, day + 90_000 - 300), (3600, day + 90_000 - 3600), (86400, day)]),
        (300, last, *cell, [5], [(300, last)]),
    ]
    shops = [(*row[:7], [(tag << 2 | 1) % 2**64 for tag in row[7]], row[8]) for row in visitors]
    names = ["window_seconds", "window_start", "category", "color", "size", "price_band",
             "region"]
    client.insert(f"{old}.visitor_feed", visitors,  # as a worker of migration 14 wrote them
                  column_names=[*names, "visitor_hashes", "windows"])
    client.insert(f"{old}.shop_feed", shops, column_names=[*names, "shop_tags", "windows"])
    DemandStore(client, new).write(
        FlushBatch(rows=[], checkpoints=[], visitor_rows=visitors, shop_rows=shops))

    def expanded(db: str) -> list[tuple[Any, ...]]:
        return client.query(
            f"SELECT * FROM (SELECT 'v', window_seconds, toUnixTimestamp(window_start), "
            f"category, color, size, price_band, region, visitor_hash FROM {db}.visitor_cells "
            f"UNION ALL SELECT 's', window_seconds, toUnixTimestamp(window_start), category, "
            f"color, size, price_band, region, shop_tag FROM {db}.shop_cells) ORDER BY ALL"
        ).result_rows

    rows = expanded(new)
    assert rows == expanded(old)
    assert len(rows) == 2 * (3 * 2 + 3 + 3 + 1)
    assert (("v", 86400, day, *cell, 2**64 - 1) in rows
            and ("s", 300, last, *cell, 5 << 2 | 1) in rows)

    # the old database upgraded in place: its rows stay, new flushes land packed
    assert migrate(client, old, timezone="Europe/Berlin") == [
        m.version for m in load() if m.version > 14]
    DemandStore(client, old).write(FlushBatch(
        rows=[], checkpoints=[], visitor_rows=[(300, day, *cell, [7], [(300, day)])]))
    assert expanded(old) == sorted([*rows, ("v", 300, day, *cell, 7)])
    for db in (old, new):
        client.command(f"DROP DATABASE IF EXISTS {db}")


def test_the_embedded_broker_resets_a_database_of_an_old_log_or_another_zone(
    client: Any,
) -> None:
    """A worker on the embedded broker (which starts empty) drops the database when it
    holds checkpoints of the gone log, or was built in another C2M_TIMEZONE (a demo run
    before with C2M_TIMEZONE=UTC refused the next one); a new or same-zone database
    without checkpoints is kept."""
    from streams.app import reset_database
    from streams.settings import Settings

    db = "reset_zone"
    shanghai = Settings(clickhouse_database=db, timezone="Asia/Shanghai")
    migrate(client, db, timezone="UTC")
    assert reset_database(client, shanghai)
    assert not client.query("EXISTS DATABASE reset_zone").result_rows[0][0]
    migrate(client, db, timezone="Asia/Shanghai")
    assert not reset_database(client, shanghai)  # same zone, no checkpoints: kept
    migrate(client, db, timezone="Asia/Shanghai")  # and it opens
    client.command(f"DROP DATABASE IF EXISTS {db}")
