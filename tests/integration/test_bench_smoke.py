"""``python -m bench`` still runs end to end (tiny N; no timing is asserted)."""

from __future__ import annotations

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
    assert re.search(r"^2,000 events: [\d.]+ us CPU per event", out, re.M), out
    if counting:
        m = re.search(r"^2,000 events: ([\d,]+) instructions per event", out, re.M)
        assert m is not None and int(m.group(1).replace(",", "")) > 1000, out
