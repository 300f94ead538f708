"""Migration 0013's production brief (SKU hours summed per SKU and day before the catalog
join) gives exactly the rows of 0009's (every SKU hour joined), for the whole market and
for one factory, on simulated shops written through the real engine and store
(tests/integration/dashboard_data.py) in a real chDB engine. The numbers themselves are
checked against raw events in tests/integration/test_alerts.py."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from streams.sim.model import ShopSimulator
from tests.helpers.grafana import ROOT
from tests.integration.dashboard_data import SEED, START_MS

pytestmark = pytest.mark.integration


def _view_0009(factory: str) -> str:
    """0009's view body as a plain query, its parameters bound as literals."""
    text = (ROOT / "deploy/clickhouse/0009_brief_one_pass.sql").read_text(encoding="utf-8")
    body = text[text.index("CREATE OR REPLACE VIEW"):].split(" AS\n", 1)[1].rstrip().rstrip(";")
    assert re.fullmatch(r"[A-Za-z0-9_-]*", factory)  # a literal below
    # dashboard_data's database is migrated in UTC (migrate's default)
    return (body.replace("{db}", "c2m").replace("{tz}", "UTC")
            .replace("{days:UInt32}", "14").replace("{run_days:UInt32}", "30")
            .replace("{factory:String}", f"'{factory}'"))


def test_brief_sums_per_sku_before_the_join_and_gives_the_same_rows(tmp_path: Path) -> None:
    skus = Counter(e.value["factory_id"] for e in ShopSimulator(SEED, START_MS).catalog())
    factory = max(sorted(skus), key=lambda f: skus[f])
    queries = []
    for f in ("", factory):
        queries.append(_view_0009(f))
        queries.append("SELECT * FROM c2m.production_brief(days=14, run_days=30, "
                       f"factory='{f}')")
    qfile = tmp_path / "q.json"
    qfile.write_text(json.dumps(queries))
    out = subprocess.run(
        [sys.executable, "-m", "tests.integration.dashboard_data", str(tmp_path / "chdb"),
         str(qfile)], cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
    )
    assert out.returncode == 0, out.stderr[-4000:]
    market_old, market_new, factory_old, factory_new = json.loads(out.stdout)
    assert market_new and factory_new and len(factory_new) < len(market_new)
    assert market_new == market_old
    assert factory_new == factory_old
