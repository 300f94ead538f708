"""The SKU days (migration 0014, ``streams.clickhouse.sku_days``): the production brief and the
forecast's daily demand give exactly what the SKU hours alone give (0013's view with 0014's
first day, the former query) at every step of a history: before any fold, after a fold cut
short, after folds, after a new partition corrects a settled day (readers go back to the
hours at once, the next fold redoes the days), after that partition is reset, after a worker
records a longer correction horizon, after a voided fold is cut short (also once the horizon
is back) and while another fold is written meanwhile. Five days of simulated shops through
the real engine and store in a real chDB engine (tests/integration/sku_days_steps.py), in
Asia/Shanghai and in America/Santiago across the daylight-saving change that skips midnight
(2026-09-06). The brief's numbers themselves are checked against raw events in
test_alerts.py."""

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
         "the new partition reset", "folded after the reset", "a longer horizon recorded",
         "a voided fold cut short", "the horizon back after the voided fold",
         "folded under the longer horizon",
         "a fold row that does not hold", "another fold meanwhile", "folded after the other")
ZONES = {"Asia/Shanghai": 1_794_398_400_000,  # 2026-11-11 20:00 local, 5 days
         "America/Santiago": 1_788_523_200_000}  # 2026-09-04 08:00 local, 5 days


@pytest.fixture(scope="module", params=sorted(ZONES))
def steps(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
          ) -> dict[str, Any]:
    zone = request.param
    out = subprocess.run(
        [sys.executable, "-m", "tests.integration.sku_days_steps",
         str(tmp_path_factory.mktemp("skudays") / "chdb"), zone, str(ZONES[zone])],
        cwd=ROOT, capture_output=True, text=True, timeout=600, check=False,
    )
    assert out.returncode == 0, out.stderr[-4000:]
    got: dict[str, Any] = json.loads(out.stdout)
    got["zone"] = zone
    return got


def test_the_brief_and_the_daily_demand_equal_the_hours_alone(steps: dict[str, Any]) -> None:
    for step in STEPS:
        got = steps[step]
        briefs = [k for k in got if k.startswith("brief ")]
        assert len(briefs) == 8, step  # 2, 3, 5 and 14 days; the market and a factory
        for key in briefs:
            assert got[key], (step, key)
            assert got[key] == got["hours " + key.removeprefix("brief ")], (step, key)
        assert got["daily"] and got["daily"] == got["daily hours"], step


def test_settled_days_are_folded_once_and_read_from_the_days(steps: dict[str, Any]) -> None:
    before, cut_short, folded, again = (steps[s] for s in STEPS[:4])
    assert (before["valid"], before["sku_days"]) == (0, 0)
    # rows of a fold that never recorded its bound are not read (and folded again)
    assert cut_short["valid"] == 0 and cut_short["sku_days"] > 0
    # five days from a morning or evening: the watermark less 48 h settles three local
    # days, the first one partial (Santiago's third one is 23 hours long)
    assert folded["valid"] == 1 and folded["refreshed"] == 3 and folded["sku_days"] > 0
    assert folded["cut"] == {"Asia/Shanghai": 1_794_585_600,  # 2026-11-14 00:00 +08:00
                             "America/Santiago": 1_788_750_000,  # 2026-09-07 00:00 -03:00
                             }[steps["zone"]]
    assert (again["refreshed"], again["cut"], again["sku_days"]) == (
        0, folded["cut"], folded["sku_days"])


def test_a_correction_of_a_settled_day_reaches_the_brief_at_once_and_the_days_next(
    steps: dict[str, Any]
) -> None:
    folded, corrected, refolded, reset, after_reset = (
        steps[s] for s in (STEPS[2], *STEPS[4:8]))
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


def test_a_longer_horizon_a_voided_fold_cut_short_and_a_concurrent_fold(
    steps: dict[str, Any]
) -> None:
    folded, longer, cut_short, back, refolded, bad_row, raced, after = (
        steps[s] for s in (STEPS[7], *STEPS[8:]))
    # a worker's horizon grew by a day: what was settled may change again
    assert longer["valid"] == 0
    # the next fold voids first, so a crash after it leaves readers on the hours, also
    # once the fold before it would hold again
    assert (cut_short["valid"], cut_short["sku_days"]) == (0, 0)
    assert (back["valid"], back["sku_days"]) == (0, 0)
    # folded again under the longer horizon: a day less is settled
    assert refolded["valid"] == 1 and refolded["refreshed"] == 2
    assert refolded["cut"] < folded["cut"] and refolded["sku_days"] < folded["sku_days"]
    # a fold row whose watermarks do not hold; then another process voids the fold while
    # this one folds: this one does not record its bound, readers stay on the hours
    assert bad_row["valid"] == 0
    assert raced["valid"] == 0 and raced["refreshed"] == 0
    assert (after["valid"], after["cut"], after["sku_days"]) == (
        1, refolded["cut"], refolded["sku_days"])
