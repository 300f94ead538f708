"""Known promotion days (C2M_PROMOTION_DAYS) and the surge rule: a sale lifting the whole
market is not a surge; a colour taking off on the sale day beyond the sale still is."""

from __future__ import annotations

from datetime import date

import pytest

from streams.core.alerting.book import Alert
from streams.core.alerting.evaluator import AlertEvaluator, PreparedInputs
from streams.core.calendar import MarketCalendar
from streams.core.promotions import NO_PROMOTIONS, PromotionCalendar
from streams.sim.model import DAY_MS, HOUR_MS, ShopSimulator, SimEvent
from streams.sim.scenario import Scenario, ScenarioTruth
from tests.signals.quality import START_MS, score
from tests.signals.reference import reference_inputs

CHINA = MarketCalendar("Asia/Shanghai")
#: day 6 of the scenario from China midnight (START_MS is 08:00 China time)
PROMO_MS = START_MS + 6 * DAY_MS - 8 * HOUR_MS
PROMO_DAY = CHINA.local_date(PROMO_MS // 1000)


def _run(surge: bool, promos: PromotionCalendar) -> tuple[list[SimEvent], ScenarioTruth,
                                                           list[Alert]]:
    sim = ShopSimulator(7, START_MS, n_skus=60, orders_per_hour=200, scenario=Scenario(
        stockout_skus=0, promo_days=(PROMO_MS,), promo_day_multiplier=3.0,
        surge_start_ms=PROMO_MS + 10 * HOUR_MS if surge else None))
    events = sim.catalog() + sim.events(START_MS + 7 * DAY_MS)
    prep = PreparedInputs(reference_inputs(events))
    ev = AlertEvaluator(calendar=CHINA, promotions=promos)
    assert prep.first_hour is not None
    changes: list[Alert] = []
    for h in range(prep.first_hour, (START_MS + 7 * DAY_MS) // 1000 - 3600, 3600):
        changes += ev.evaluate(h, prep)
    return events, sim.truth, changes


def _on_promo_day(changes: list[Alert]) -> list[Alert]:
    return [a for a in changes if a.kind == "surge" and a.state == "open"
            and CHINA.local_date(a.window_start) == PROMO_DAY]


@pytest.mark.parametrize("stated", [False, True])
def test_a_known_promotion_day_is_not_a_surge(stated: bool) -> None:
    _, _, blind = _run(False, NO_PROMOTIONS)
    assert len(_on_promo_day(blind)) >= 5  # without the calendar: the sale reads as surges
    cal = PromotionCalendar.parse(PROMO_DAY.isoformat() + ("*3" if stated else ""))
    _, _, changes = _run(False, cal)
    assert _on_promo_day(changes) == []


def test_a_surge_beyond_the_promotion_is_still_found() -> None:
    cal = PromotionCalendar.parse(date.isoformat(PROMO_DAY))
    events, truth, changes = _run(True, cal)
    s = score(changes, truth, events)["surge"]
    assert s.truth == 2 and s.recall >= 0.9 and s.precision >= 0.9, s
