"""The Grafana dashboards as files, and their SQL expanded the way Grafana and the
grafana-clickhouse-datasource plugin do it (pkg/macros/macros.go): ``bench.grafana.expand``,
which the read benchmark runs the dashboards' queries with (one implementation)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench.grafana import expand

__all__ = ["CH_TYPE", "DASHBOARDS", "ROOT", "expand", "load_dashboard"]

ROOT = Path(__file__).resolve().parents[2]
DASHBOARDS = sorted((ROOT / "deploy/grafana/dashboards").glob("*.json"))
CH_TYPE = "grafana-clickhouse-datasource"


def load_dashboard(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))
