"""The benchmarks still run end to end at a tiny size (no timing is asserted)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]


def test_bench_runs_at_tiny_n() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "bench", "--events", "3000", "--runs", "1",
         "--baseline-events", "300", "--baseline-seconds", "5", "--latency-seconds", "3",
         "--skip", "quix"],  # quixstreams is in the optional `bench` extra only
        cwd=ROOT, check=True, capture_output=True, text=True, timeout=400,
    ).stdout
    assert "events: 3,000" in out
    for label in ("raw ceiling", "c2m-pulse end to end", "idiomatic Faust", "latency at half load",
                  "RSS against live cells", "RSS against events"):
        assert label in out, (label, out)
    rates = re.findall(r"^(?:raw ceiling|c2m-pulse|idiomatic Faust).*?\s([\d,]+)\s+\[", out, re.M)
    assert len(rates) == 3 and all(int(r.replace(",", "")) > 0 for r in rates), out


def test_engine_cost_runs_at_tiny_n() -> None:
    """``python -m bench.engine_cost`` (CPU time, and instructions when valgrind is here)."""
    args = [sys.executable, "-m", "bench.engine_cost", "--events", "2000", "--runs", "1"]
    counting = shutil.which("valgrind") is not None
    out = subprocess.run(
        args + (["--instructions"] if counting else []),
        cwd=ROOT, check=True, capture_output=True, text=True, timeout=400,
    ).stdout
    assert re.search(r"^2,000 events, compiled path: [\d.]+ us CPU per event", out, re.M), out
    if counting:
        m = re.search(r"^2,000 events: ([\d,]+) instructions per event", out, re.M)
        assert m is not None and int(m.group(1).replace(",", "")) > 1000, out


def test_engine_cost_prices_the_python_paths() -> None:
    """``--path``: the engine without its compiled core (msgspec and the Python apply, or
    the contract decoder for every event), to price what compiling saves."""
    for path in ("msgspec", "pydantic"):
        out = subprocess.run(
            [sys.executable, "-m", "bench.engine_cost", "--events", "2000", "--runs", "1",
             "--path", path], cwd=ROOT, check=True, capture_output=True, text=True, timeout=400,
        ).stdout
        assert re.search(rf"^2,000 events, {path} path: [\d.]+ us CPU per event", out, re.M), out


def test_agent_cost_runs_at_tiny_n() -> None:
    """``python -m bench.agent_cost`` (the demand agent's hand-off per batch)."""
    out = subprocess.run(
        [sys.executable, "-m", "bench.agent_cost", "--batches", "200", "--repeats", "1"],
        cwd=ROOT, check=True, capture_output=True, text=True, timeout=120,
    ).stdout
    assert re.search(r"through the agent [\d.]+ us, the agent adds -?[\d.]+ us", out), out


def test_read_bench_runs_at_tiny_size(tmp_path: Path) -> None:
    """``python -m bench.read`` at a tiny size (what CI runs of it): the history is built
    through the engine and store, every user query runs and is timed, every table sized."""
    out_json = tmp_path / "read.json"
    out = subprocess.run(
        [sys.executable, "-m", "bench.read", "--days", "1", "--events-per-day", "20000",
         "--repeats", "1", "--workdir", str(tmp_path / "work"), "--json", str(out_json)],
        cwd=ROOT, check=True, capture_output=True, text=True, timeout=600,
    ).stdout
    (result,) = json.loads(out_json.read_text())
    assert result["build"]["events"] > 15_000
    queries = result["queries"]
    for name in ("web view page (all its API calls)", "/api/alerts (all)",
                 "/api/brief, c2m brief (category, 14 d, run 30 d)",
                 "c2m.production_brief (plain SELECT *)",
                 "alert service: input load for one hour",
                 "alert service: the daily forecast (56 days read, modelled; once a day)",
                 "alert leader: SKU days, a tick with no day newly settled"):
        assert name in queries, name
    from bench.read import RANGES, grafana_queries

    panels = grafana_queries()  # a panel with a range or variable: 4 ranges x 2 settings
    expected = sum(len(RANGES) * 2 if "$" in sql else 1 for _, _, sql in panels)
    assert len(panels) >= 10
    assert len([n for n in queries if n.startswith("grafana ")]) == expected
    assert all(q["p95_ms"] > 0 for q in queries.values())
    for table in ("demand_cells", "demand_state", "sku_hours", "visitor_cells"):
        assert result["storage"][table]["compressed_bytes_per_million_events"] > 0, table
    assert "| web view page (all its API calls) |" in out
