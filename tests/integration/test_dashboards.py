"""Every Grafana panel query runs against the real schema on a simulated hour; every
PromQL expression is valid.

ClickHouse panel queries are expanded the way the grafana-clickhouse-datasource plugin
does it (pkg/macros/macros.go: ``$__timeFilter(c)`` -> ``c >= toDateTime(from) AND c <=
toDateTime(to)``, ``$__timeInterval(c)`` -> ``toStartOfInterval(toDateTime(c), INTERVAL
n second)``, ...) after Grafana has replaced the template variables.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections import defaultdict
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from streams.sim.model import ShopSimulator
from tests.helpers.grafana import CH_TYPE, DASHBOARDS, ROOT, expand, load_dashboard
from tests.integration.dashboard_data import HOURS, SEED, START_MS

pytestmark = pytest.mark.integration

def _targets(kind: str) -> list[tuple[str, str, dict[str, Any]]]:
    out = []
    for path in DASHBOARDS:
        for panel in load_dashboard(path)["panels"]:
            for t in panel.get("targets", []):
                if t["datasource"]["type"] == kind:
                    out.append((path.name, panel["title"], t))
    return out


def test_dashboards_are_generated_and_reference_provisioned_datasources() -> None:
    gen = subprocess.run(
        [sys.executable, str(ROOT / "deploy/grafana/generate.py"), "--check"],
        capture_output=True, text=True, check=False,
    )
    assert gen.returncode == 0, gen.stdout + gen.stderr
    import yaml

    provisioned = yaml.safe_load(
        (ROOT / "deploy/grafana/provisioning/datasources/datasources.yml").read_text()
    )["datasources"]
    uids = {(d["type"], d["uid"]) for d in provisioned}
    titles = {load_dashboard(p)["title"] for p in DASHBOARDS}
    assert {"Factory demand", "Pipeline health"} <= titles
    for path in DASHBOARDS:
        board = load_dashboard(path)
        panels = board["panels"]
        assert len({p["id"] for p in panels}) == len(panels), path.name
        cells: set[tuple[int, int]] = set()
        for panel in panels:
            assert panel["type"] in {"timeseries", "table", "stat", "barchart"}, panel["title"]
            g = panel["gridPos"]
            assert g["x"] >= 0 and g["x"] + g["w"] <= 24, panel["title"]
            area = {(x, y) for x in range(g["x"], g["x"] + g["w"])
                    for y in range(g["y"], g["y"] + g["h"])}
            assert not area & cells, f"{panel['title']} overlaps another panel"
            cells |= area
            for t in panel["targets"]:
                assert (t["datasource"]["type"], t["datasource"]["uid"]) in uids, panel["title"]


def test_macro_expansion_matches_the_plugin() -> None:
    sql = (
        "SELECT $__timeInterval(ts) t FROM x WHERE $__timeFilter(ts) AND a = $window "
        "AND b = ${category:sqlstring} AND c BETWEEN $__fromTime AND $__toTime "
        "AND d = $__interval_s"
    )
    assert expand(sql, 100, 200, 60, {"window": "300", "category": "it's"}) == (
        "SELECT toStartOfInterval(toDateTime(ts), INTERVAL 60 second) t FROM x WHERE "
        "ts >= toDateTime(100) AND ts <= toDateTime(200) AND a = 300 AND b = 'it''s' "
        "AND c BETWEEN toDateTime(100) AND toDateTime(200) AND d = 60"
    )


def _nonzero(rows: list[list[Any]]) -> bool:
    """Some numeric cell is not zero (an aggregate over nothing returns a row of zeros)."""
    for row in rows:
        for v in row:
            try:
                if Decimal(str(v)) != 0:
                    return True
            except ArithmeticError:
                continue
    return False


def _run_chdb(engine_dir: Path, queries: list[str]) -> list[list[list[Any]]]:
    qfile = engine_dir.parent / "queries.json"
    qfile.write_text(json.dumps(queries))
    out = subprocess.run(
        [sys.executable, "-m", "tests.integration.dashboard_data", str(engine_dir), str(qfile)],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
    )
    assert out.returncode == 0, out.stderr[-4000:]
    return json.loads(out.stdout)


def test_every_clickhouse_panel_returns_rows_on_simulated_data(tmp_path: Path) -> None:
    targets = _targets(CH_TYPE)
    assert len(targets) >= 10
    variables = [
        v for p in DASHBOARDS for v in load_dashboard(p).get("templating", {}).get("list", [])
    ]
    var_queries = [v["query"] for v in variables if v["type"] == "query"]
    frm, to = START_MS // 1000, START_MS // 1000 + HOURS * 3600
    # two settings of the variables: hourly windows with "All" categories and factories;
    # 5-minute windows with one category of the simulated catalog and a factory making it
    combos = [{"window": "3600", "category": "__all", "factory": "__all"},
              {"window": "300", "category": None, "factory": None}]
    # Grafana's interval for a 3 h range on a ~1000 px panel is 10 s; also try 5 minutes.
    queries = []
    for combo in combos:
        for interval in (10, 300):
            for _, _, t in targets:
                queries.append((combo, interval, t["rawSql"]))

    # a category of the simulated catalog (the category variable must offer it): the one
    # most shops list (the market panels fold cells of fewer than k shops into 'other'),
    # then the most SKUs, and the factory making most of its SKUs (it has a restock alert)
    shops: dict[str, set[str]] = defaultdict(set)
    skus: dict[tuple[str, str], int] = defaultdict(int)
    for e in ShopSimulator(SEED, START_MS).catalog():
        shops[e.value["category"]].add(e.value["shop_id"])
        skus[(e.value["category"], e.value["factory_id"])] += 1
    category = max(sorted(shops), key=lambda c: (
        len(shops[c]), sum(n for (c2, _), n in skus.items() if c2 == c)))
    factory = max(sorted(f for c, f in skus if c == category), key=lambda f: skus[(category, f)])
    combos[1]["category"], combos[1]["factory"] = category, factory

    expanded = [expand(sql, frm, to, interval, c) for c, interval, sql in queries]  # type: ignore[arg-type]
    results = _run_chdb(tmp_path / "chdb", var_queries + expanded)
    var_rows, results = results[: len(var_queries)], results[len(var_queries) :]
    assert [category] in var_rows[0], "the category variable does not offer the category"
    assert [factory] in var_rows[1], "the factory variable does not offer the factory"
    empty = [
        (title, combo, interval)
        for (combo, interval, _), rows, (_, title, _) in zip(
            queries, results, targets * (len(queries) // len(targets)), strict=True
        )
        if not rows or not _nonzero(rows)
    ]
    assert not empty, f"panels without data: {empty}"


def test_every_promql_expression_parses(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    assert promtool, "promtool (Debian prometheus) missing; .ci/run installs it"
    exprs = [t["expr"] for _, _, t in _targets("prometheus")]
    assert len(exprs) >= 10
    rules = {
        "groups": [{
            "name": "dashboards",
            "rules": [
                {"record": f"c2m:dashboard_expr_{i}", "expr": e.replace("$__rate_interval", "1m")}
                for i, e in enumerate(exprs)
            ],
        }]
    }
    import yaml

    path = tmp_path / "rules.yml"
    path.write_text(yaml.safe_dump(rules))
    check = subprocess.run([promtool, "check", "rules", str(path)],
                           capture_output=True, text=True, check=False)
    assert check.returncode == 0, check.stdout + check.stderr
    assert f"SUCCESS: {len(exprs)} rules found" in check.stdout
