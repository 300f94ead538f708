"""Retention TTLs on a real ClickHouse engine (chDB, in a child process: one engine path
per process): expired windows and SKU hours go in ClickHouse's merges, the rest stays,
and the TTLs are altered only when the settings change."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]

_SCRIPT = """
import json, sys
from datetime import UTC, datetime, timedelta
import clickhouse_connect
from streams.clickhouse.migrations import migrate
from streams.clickhouse.retention import apply_retention, current_ttl, wanted_ttls

client = clickhouse_connect.get_client(dsn="chdb://" + sys.argv[1])
migrate(client, "c2m")
out = {}
out["first"] = apply_retention(client, "c2m", wanted_ttls({300: 35, 3600: 400}, 800, 30, 35))
out["again"] = apply_retention(client, "c2m", wanted_ttls({300: 35, 3600: 400}, 800, 30, 35))
now = datetime.now(UTC).replace(microsecond=0)
def ago(days):
    return now - timedelta(days=days)
cells = [(300, 40), (300, 10), (3600, 40), (3600, 500), (86400, 900)]
client.insert("c2m.demand_state", [
    ["shop.orders", 0, size, ago(days), "cups", "red", "M", "10-20", "east",
     1, size, 0, 0, 0, days, 1]
    for size, days in cells
], column_names=["source_topic", "source_partition", "window_seconds", "window_start",
                 "category", "color", "size", "price_band", "region", "orders", "units",
                 "gmv_e4", "cancelled_units", "returned_units", "pageviews", "version"])
client.insert("c2m.demand_cells", [
    [size, ago(days), ago(days), "cups", "red", "M", "10-20", "east", 1, size, 0, 0, 0, days,
     0, 1]
    for size, days in cells
], column_names=["window_seconds", "window_start", "window_end", "category", "color", "size",
                 "price_band", "region", "orders", "units", "gmv_e4", "cancelled_units",
                 "returned_units", "pageviews", "unique_visitors", "version"])
client.insert("c2m.market_cells", [
    [size, ago(days), ago(days), "cups", "", "", "", "", 2, 1, size, 0, 0, 0, days, 3, 1]
    for size, days in cells
], column_names=["window_seconds", "window_start", "window_end", "category", "color", "size",
                 "price_band", "region", "fold_level", "orders", "units", "gmv_e4",
                 "cancelled_units", "returned_units", "pageviews", "k", "version"])
client.insert("c2m.sku_hours", [
    [ago(days), "SKU1", 0, days, 0, 0, 0, 0, 0, -1, 0, 1] for days in (900, 100)
], column_names=["hour_start", "sku", "orders", "units", "cancelled_units", "returned_units",
                 "pageviews", "restock_shipped", "restock_received", "count_ts",
                 "count_on_hand", "version"])
client.insert("c2m.sku_days", [
    [ago(days), "SKU1", 0, days, 0, 0, 0, 1] for days in (900, 100)
], column_names=["day_start", "sku", "orders", "units", "cancelled_units", "returned_units",
                 "pageviews", "version"])
client.insert("c2m.visitor_cells", [
    [size, ago(days), "cups", "red", "M", "10-20", "east", days] for size, days in cells
], column_names=["window_seconds", "window_start", "category", "color", "size",
                 "price_band", "region", "visitor_hash"])
client.insert("c2m.shop_cells", [
    [size, ago(days), "cups", "red", "M", "10-20", "east", days] for size, days in cells
], column_names=["window_seconds", "window_start", "category", "color", "size",
                 "price_band", "region", "shop_tag"])
client.insert("c2m.sku_state", [
    ["shop.logistics", 0, "SKU1", ago(days), 0, days, 0, 0, 0, 0, 0, -1, 0, 1]
    for days in (900, 100)
], column_names=["source_topic", "source_partition", "sku", "hour_start", "orders", "units",
                 "cancelled_units", "returned_units", "pageviews", "restock_shipped",
                 "restock_received", "count_ts", "count_on_hand", "version"])
client.insert("c2m.late_events", [
    ["shop.orders", 0, off, f"e{off}", "order_placed", ago(days), ago(days), 1, "{}", ago(days)]
    for off, days in ((1, 40), (2, 5))
], column_names=["source_topic", "source_partition", "source_offset", "event_id",
                 "event_type", "ts", "watermark", "lateness_ms", "payload", "recorded_at"])
for table in ("demand_state", "demand_cells", "market_cells", "visitor_cells", "shop_cells",
              "sku_state", "sku_hours", "sku_days", "late_events"):
    client.command(f"OPTIMIZE TABLE c2m.{table} FINAL")
out["demand"] = sorted(client.query(
    "SELECT window_seconds, pageviews FROM c2m.demand_state").result_rows)
out["cells"] = sorted(client.query(
    "SELECT window_seconds, pageviews FROM c2m.demand_cells").result_rows)
out["market"] = sorted(client.query(
    "SELECT window_seconds, pageviews FROM c2m.market_cells").result_rows)
out["sku_hours"] = sorted(r[0] for r in client.query(
    "SELECT units FROM c2m.sku_hours").result_rows)
out["sku_days"] = sorted(r[0] for r in client.query(
    "SELECT units FROM c2m.sku_days").result_rows)
out["visitors"] = sorted(client.query(
    "SELECT window_seconds, visitor_hash FROM c2m.visitor_cells").result_rows)
out["shops"] = sorted(client.query(
    "SELECT window_seconds, shop_tag FROM c2m.shop_cells").result_rows)
out["sku"] = sorted(r[0] for r in client.query("SELECT units FROM c2m.sku_state").result_rows)
out["late"] = sorted(r[0] for r in client.query(
    "SELECT source_offset FROM c2m.late_events").result_rows)
out["changed"] = apply_retention(
    client, "c2m", wanted_ttls({300: 0, 3600: 400, 86400: 3650}, 0, 30, 35))
out["ttl"] = {
    t: current_ttl(client, "c2m", t) for t in ("demand_state", "sku_state", "late_events")}
print(json.dumps(out))
"""


def test_retention_expires_old_windows_and_sku_hours(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", _SCRIPT, str(tmp_path / "ch")],
        capture_output=True, text=True, timeout=300, cwd=ROOT, check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["first"] == ["demand_state", "demand_cells", "market_cells", "visitor_cells",
                            "shop_cells", "sku_state", "sku_hours", "sku_days", "lost_sales",
                            "late_events"]
    assert out["again"] == []  # nothing altered when the TTLs are already in place
    # 5-minute windows: 35 days; hourly: 400 days; daily: kept (no rule); the serving
    # table keeps what the state table keeps
    assert out["demand"] == [[300, 10], [3600, 40], [86400, 900]]
    assert out["cells"] == out["demand"]
    assert out["market"] == out["demand"]  # the market fold: the same as its cells
    # visitor rows: 35 days whatever the size (unique visitors stay in demand_cells)
    assert out["visitors"] == [[300, 10]]
    assert out["shops"] == [[300, 10]]  # contributors: the same (they stay in demand_cells)
    assert out["sku"] == [100]  # 800 days
    assert out["sku_hours"] == [100]
    assert out["sku_days"] == [100]  # the SKU days: the same days as their hours
    assert out["late"] == [2]  # recorded 40 days ago: gone after 30
    # new settings: 5-minute rule gone, a daily rule added, SKU hours kept for ever, late
    # events unchanged (not altered again)
    assert out["changed"] == ["demand_state", "demand_cells", "market_cells", "sku_state",
                              "sku_hours", "sku_days", "lost_sales"]
    assert out["ttl"] == {
        "demand_state": "window_start + toIntervalDay(400) WHERE window_seconds = 3600, "
        "window_start + toIntervalDay(3650) WHERE window_seconds = 86400",
        "sku_state": "",
        "late_events": "toDateTime(recorded_at) + toIntervalDay(30)",
    }


def test_a_worker_sets_the_configured_retention_at_start(worker_factory: Any) -> None:
    worker = worker_factory(C2M_RETENTION_DAYS='{"300": 35}', C2M_RETENTION_SKU_DAYS="800",
                            C2M_RETENTION_LATE_DAYS="30", C2M_RETENTION_VISITOR_DAYS="35")
    worker.start()
    worker.wait_consumed(0, timeout=120)  # up: migrated and serving
    assert worker.stop() == 0
    rows = dict(worker.query(
        "SELECT name, engine_full FROM system.tables WHERE database = 'c2m' "
        "AND name IN ('demand_state', 'demand_cells', 'market_cells', 'visitor_cells', "
        "'sku_state', "
        "'sku_hours', 'late_events')"
    ))
    for table in ("demand_state", "demand_cells", "market_cells"):
        assert "TTL window_start + toIntervalDay(35) WHERE window_seconds = 300 " in rows[table]
    assert "TTL window_start + toIntervalDay(35) " in rows["visitor_cells"]
    assert "TTL hour_start + toIntervalDay(800) " in rows["sku_state"]
    assert "TTL hour_start + toIntervalDay(800) " in rows["sku_hours"]
    assert "TTL toDateTime(recorded_at) + toIntervalDay(30) " in rows["late_events"]
