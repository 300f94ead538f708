"""The alert store loads the restock movements the transit window needs, older than the
demand history (real chDB engine, in a child process: one engine path per process)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
H = 1_793_491_200  # 2026-11-01T00:00Z, the hour the evaluated span ends
DAY = 86_400

_SCRIPT = """
import json, sys
from datetime import UTC, datetime
import clickhouse_connect
from streams.clickhouse.alerts import AlertStore
from streams.core.alerting.inputs import COUNT_ON_HAND, COUNT_TS, RECEIVED, SHIPPED, UNITS
from streams.clickhouse.migrations import migrate
from streams.clickhouse.store import DemandStore

path, H, DAY = sys.argv[1], int(sys.argv[2]), 86_400
client = clickhouse_connect.get_client(dsn="chdb://" + path)
migrate(client, "c2m")
client.insert(
    "c2m.products",
    [["SKU1", 0, "F1", "cups", "red", "M", "10-20", 15.0, 30, 100],
     ["SKU1", 1, "F1", "cups", "red", "M", "10-20", 15.0, 45, 100],  # newer: 45 days
     ["SKU2", 0, "F2", "socks", "white", "L", "0-10", 5.0, 3, 500]],
    column_names=["sku", "ts", "factory_id", "category", "color", "size", "price_band",
                  "list_price", "lead_time_days", "moq"],
)
cols = ["source_topic", "source_partition", "sku", "hour_start", "orders", "units",
        "cancelled_units", "returned_units", "pageviews", "restock_shipped",
        "restock_received", "count_ts", "count_on_hand", "version"]
def row(p, sku, t, units=0, shipped=0, received=0, count=(-1, 0), version=1):
    at = datetime.fromtimestamp(t, UTC)
    return ["shop.logistics", p, sku, at, 0, units, 0, 0, 0, shipped, received,
            count[0], count[1], version]
client.insert("c2m.sku_state", [
    row(0, "SKU1", H - 40 * DAY, shipped=500, version=1),
    row(0, "SKU1", H - 40 * DAY, shipped=600, version=2),  # a later flush of the hour
    row(1, "SKU1", H - 40 * DAY, shipped=50),  # another partition: summed
    row(0, "SKU1", H - 20 * DAY, units=9, received=100),
    row(0, "SKU1", H - 70 * DAY, shipped=999),  # before the transit window loaded
    row(0, "SKU1", H - 5 * DAY, units=10, count=((H - 5 * DAY) * 1000 + 1, 300)),
    row(0, "SKU2", H - 40 * DAY, units=7),  # demand only: not a movement
], column_names=cols)
DemandStore(client, "c2m").rebuild_serving()  # rows written by hand: the serving rows too
store = AlertStore(client, "c2m")
inputs = store.load_inputs(H - 15 * DAY, H, H - 60 * DAY)
print(json.dumps({
    "max_lead": store.max_lead_time_days(),
    "hours": {sku: {str(t): [h[UNITS], h[SHIPPED], h[RECEIVED], h[COUNT_TS], h[COUNT_ON_HAND]]
                    for t, h in sorted(hs.items())}
              for sku, hs in inputs.sku_hours.items()},
}))
"""


def test_load_inputs_adds_the_older_restock_movements(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-c", _SCRIPT, str(tmp_path / "chdb"), str(H)],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    got = json.loads(out.stdout)
    assert got["max_lead"] == 45  # the latest catalog version of SKU1
    assert got["hours"] == {
        "SKU1": {
            # older than the 15 days of demand history: movements only, no demand, no count
            str(H - 40 * DAY): [0, 650, 0, -1, 0],
            str(H - 20 * DAY): [0, 0, 100, -1, 0],
            # inside the history: the whole hour
            str(H - 5 * DAY): [10, 0, 0, (H - 5 * DAY) * 1000 + 1, 300],
        },
    }
