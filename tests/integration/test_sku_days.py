"""The SKU days (migration 0014, ``streams.clickhouse.sku_days``): the production brief and
the forecast's daily demand give exactly what the SKU hours alone give (0013's view, the
former query) before any fold, after a fold cut short, after folds, after a new partition
corrects a settled day (readers go back to the hours at once, the next fold redoes the
days) and after that partition is reset; five days of simulated shops in the market zone
Asia/Shanghai through the real engine and store in a real chDB engine
(tests/integration/sku_days_steps.py). The brief's numbers themselves are checked against
raw events in test_alerts.py."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

from tests.helpers.grafana import ROOT

pytestmark = pytest.mark.integration

STEPS = ("before any fold", "a fold cut short", "folded", "folded again",
         "a new partition corrected a settled day", "folded after the correction",
         "the new partition reset", "folded after the reset")


@pytest.fixture(scope="module")
def steps(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-m", "tests.integration.sku_days_steps",
         str(tmp_path_factory.mktemp("skudays") / "chdb")],
        cwd=ROOT, capture_output=True, text=True, timeout=600, check=False,
    )
    assert out.returncode == 0, out.stderr[-4000:]
    got: dict[str, Any] = json.loads(out.stdout)
    return got


@pytest.mark.parametrize("step", STEPS)
def test_the_brief_and_the_daily_demand_equal_the_hours_alone(
    steps: dict[str, Any], step: str
) -> None:
    got = steps[step]
    for key in got:
        if key.startswith("brief "):
            rows = got[key]
            assert rows, key
            assert rows == got["hours " + key.removeprefix("brief ")], (step, key)
    assert got["daily"] and got["daily"] == got["daily hours"], step


def test_settled_days_are_folded_once_and_read_from_the_days(steps: dict[str, Any]) -> None:
    before, cut_short, folded, again = (steps[s] for s in STEPS[:4])
    assert (before["valid"], before["sku_days"]) == (0, 0)
    # rows of a fold that never recorded its bound are not read, and are folded again
    assert cut_short["valid"] == 0 and cut_short["sku_days"] > 0
    # five days from 20:00 on 11 November (Shanghai): the watermark less 48 h settles the
    # days up to 14 November, the first one partial
    assert folded["valid"] == 1 and folded["refreshed"] == 3 and folded["sku_days"] > 0
    assert folded["cut"] == 1_794_585_600  # 2026-11-14 00:00 +08:00
    assert (again["refreshed"], again["cut"], again["sku_days"]) == (
        0, folded["cut"], folded["sku_days"])


def test_a_correction_of_a_settled_day_reaches_the_brief_at_once_and_the_days_next(
    steps: dict[str, Any]
) -> None:
    folded, corrected, refolded, reset, after_reset = (steps[s] for s in STEPS[3:])
    qty = steps["order"]["qty"]
    # the new partition's checkpoint voids the fold: readers take the SKU hours alone
    assert corrected["valid"] == 0 and corrected["cut"] == 0
    days, hours = corrected["order day"]
    assert hours - days == qty  # the folded day is stale, and nobody reads it
    # the next fold starts again from the first hour held and includes the correction
    assert refolded["valid"] == 1 and refolded["refreshed"] == 3
    assert refolded["cut"] == folded["cut"]
    assert refolded["order day"] == [hours, hours]
    # a reset empties both tables; the fold after it is as before the correction
    assert (reset["valid"], reset["sku_days"]) == (0, 0)
    assert after_reset["order day"] == [hours - qty, hours - qty]
    assert after_reset["sku_days"] == folded["sku_days"]
