"""Factory-scoped ClickHouse users (c2m db grant), enforced by the real engine.

The embedded engine has no storage for users created by SQL, so the policies run as a
users.xml user (tests/helpers/chdb_users.py) rendered from the same definition as the SQL; the
SQL itself is checked by ClickHouse's own parser (formatQuery) and for what it says. The
data: three hours of simulated shops for six factories, and alerts, as the worker writes
them (tests/integration/dashboard_data.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from streams.clickhouse import sku_days
from streams.clickhouse.access import GRANTED, FactoryAccess
from tests.helpers.chdb_users import as_factory, as_owner
from tests.helpers.grafana import DASHBOARDS, expand, load_dashboard

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
DENIED = ["demand_state", "demand_cells", "demand_by_attribute", "demand_rolling",
          "late_events", "visitor_cells", "shop_cells", "sku_state", "checkpoints",
          "dedup_ids", "pipeline_settings", "alert_progress", "database_info",
          "sku_days_folded"]


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """The database (built by an unrestricted process) and what the operator sees."""
    root = tmp_path_factory.mktemp("factory-access")
    queries = [
        "SELECT factory_id, groupArray(sku) FROM c2m.products_current GROUP BY factory_id",
        "SELECT alert_id, kind, factory_id FROM c2m.alerts FINAL",
    ]
    qfile = root / "q.json"
    qfile.write_text(json.dumps(queries))
    out = subprocess.run(
        [sys.executable, "-m", "tests.integration.dashboard_data", str(root / "data"),
         str(qfile)], cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert out.returncode == 0, out.stderr[-3000:]
    skus, alerts = json.loads(out.stdout)
    engine = root / "data" / "chdb"
    assert as_owner(engine, "c2m", ["SELECT 1"]) == [[[1]]]
    # SKU days of the three hours (their day is not settled: folded here so that the
    # table holds every factory's rows)
    fold = sku_days.fold_sql("c2m").replace("{lo:Int64}", "0").replace("{hi:Int64}", "4e9")
    assert as_owner(engine, "c2m", [fold, "SELECT count() > 0 FROM c2m.sku_days"])[1] == [[1]]
    return engine, {"skus": {f: set(s) for f, s in skus}, "alerts": alerts}


def test_the_sql_is_what_the_engine_enforces(engine: tuple[Path, dict[str, Any]]) -> None:
    """Every statement of `c2m db grant` parses in ClickHouse; the user is read-only; it
    holds the password's hash only; its row conditions are the users.xml filters."""
    path, _ = engine
    access = FactoryAccess("c2m", "义乌'袜厂 F1")
    stmts = access.statements("s3cret-pass")
    assert all("s3cret-pass" not in s for s in stmts)
    assert "'" not in access.row_filters()["products"].split("unhex(")[0]  # id as hex only
    parsed = as_owner(path, "c2m", [
        "SELECT formatQuery({q:String})".replace("{q:String}", "'" + s.replace("\\", "\\\\")
                                                 .replace("'", "\\'") + "'")
        for s in stmts])
    assert all(isinstance(p, list) for p in parsed), parsed
    assert stmts[0].startswith(f"CREATE USER OR REPLACE `{access.user}` IDENTIFIED WITH "
                               "sha256_hash BY ") and "readonly = 2" in stmts[0]
    grants = [s for s in stmts if s.startswith("GRANT")]
    assert grants == [f"GRANT SELECT ON c2m.{t} TO `{access.user}`" for t in GRANTED]
    policies = [s for s in stmts if s.startswith("CREATE ROW POLICY")]
    assert [p.split(" USING ")[1].rsplit(" TO ", 1)[0] for p in policies] == list(
        access.row_filters().values())
    xml = access.users_xml("s3cret-pass")
    assert "s3cret-pass" not in xml and all(f"GRANT SELECT ON c2m.{t}<" in xml for t in GRANTED)


@pytest.mark.parametrize("factory", ["F001", "F002"])
def test_a_factory_user_reads_only_its_own(
    engine: tuple[Path, dict[str, Any]], factory: str
) -> None:
    path, seen = engine
    mine = seen["skus"][factory]
    others = set().union(*(s for f, s in seen["skus"].items() if f != factory))
    queries = [
        # the dashboard's factory variable: only this factory
        "SELECT DISTINCT factory_id FROM c2m.products_current ORDER BY factory_id",
        "SELECT DISTINCT sku FROM c2m.products",
        "SELECT DISTINCT sku FROM c2m.sku_hours",
        "SELECT DISTINCT sku FROM c2m.sku_hourly",
        "SELECT DISTINCT sku FROM c2m.sku_days",
        "SELECT kind, factory_id, message FROM c2m.alerts FINAL",
        "SELECT kind, factory_id FROM c2m.alert_history",
        "SELECT count() FROM c2m.production_brief(days=14, run_days=30, factory='')",
        # another factory's brief, by parameter
        f"SELECT count() FROM c2m.production_brief(days=14, run_days=30, factory="
        f"'{'F002' if factory == 'F001' else 'F001'}')",
        "SELECT count() FROM c2m.market_rolling",
        "SELECT count() FROM c2m.market_demand(seconds=3600, from_s=0, to_s=4000000000)",
        *(f"SELECT count() FROM c2m.{t}" for t in DENIED),
        "INSERT INTO c2m.alerts (alert_id) VALUES ('x')",
        "SELECT count() FROM c2m.alerts SETTINGS readonly = 0",
        # SQL tricks a dashboard variable could smuggle in: the policies still hold
        "SELECT DISTINCT sku FROM c2m.products WHERE factory_id = 'F001' OR 1 = 1",
        "SELECT DISTINCT sku FROM c2m.sku_hours WHERE 1 = 1 UNION ALL "
        "SELECT sku FROM c2m.products SETTINGS additional_table_filters = "
        "{'c2m.products': '1'}",
    ]
    got = as_factory(path, "c2m", factory, queries)
    factories, products, hours, hourly, days, alerts, history, brief, brief_other, rolling, \
        market = got[:11]
    denied = got[11:11 + len(DENIED)]
    insert, unlock, tricked, union = got[11 + len(DENIED):]
    assert factories == [[factory]]
    assert {r[0] for r in products} == mine
    assert hours and {r[0] for r in hours} <= mine and {r[0] for r in hourly} <= mine
    assert not {r[0] for r in hours} & others
    assert days and {r[0] for r in days} <= mine
    assert all(kind != "restock" or fid == factory for kind, fid, _ in alerts)
    assert all(kind != "restock" or fid == factory for kind, fid in history)
    assert any(kind != "restock" for kind, _, _ in alerts)  # the market signals
    restock_seen = {a[0] for a in seen["alerts"] if a[1] == "restock" and a[2] != factory}
    assert not any(a_id in json.dumps(alerts) for a_id in restock_seen)
    assert brief[0][0] > 0 and brief_other == [[0]]
    assert rolling[0][0] > 0 and market[0][0] > 0  # market views: granted, by definer
    assert all(d == {"error": "ACCESS_DENIED"} for d in denied), dict(zip(DENIED, denied,
                                                                          strict=True))
    assert insert == {"error": "ACCESS_DENIED"}
    assert unlock == {"error": "READONLY"}
    assert {r[0] for r in tricked} == mine
    assert isinstance(union, dict) or {r[0] for r in union} <= mine


def test_the_dashboard_panels_as_a_factory_with_a_tampered_variable(
    engine: tuple[Path, dict[str, Any]],
) -> None:
    """The Factory demand dashboard's factory panels run as F001's user with the factory
    variable set to F002, "All" and an injection: never F002's alerts or SKUs."""
    path, seen = engine
    board = next(load_dashboard(p) for p in DASHBOARDS
                 if load_dashboard(p)["title"] == "Factory demand")
    panels = {p["title"]: p["targets"][0]["rawSql"] for p in board["panels"]}
    sqls = [panels["Open alerts"], panels["Production brief (last 14 days, run covering 30 "
                                            "days)"]]
    queries = []
    for value in ("F002", "__all", "F002' OR factory_id != '", "F001"):
        for sql in sqls:
            queries.append(expand(sql, 0, 4_000_000_000, 3600,
                                  {"window": "3600", "category": "__all", "factory": value}))
    got = as_factory(path, "c2m", "F001", queries)
    assert all(isinstance(r, list) for r in got), got
    f002 = seen["skus"]["F002"]
    f002_alerts = {a[0] for a in seen["alerts"] if a[1] == "restock" and a[2] == "F002"}
    text = json.dumps(got, ensure_ascii=False)
    assert not any(s in text for s in f002) and not any(a in text for a in f002_alerts)
