"""streams.core.forecast and streams.core.promotions on series with known answers."""

from __future__ import annotations

import math
import random
from datetime import date
from itertools import pairwise

import pytest

from streams.core.forecast import ForecastConfig, forecast_category, market_growth
from streams.core.promotions import PromotionCalendar, PromotionSyntaxError

MONDAY = date(2026, 3, 2).toordinal()


def _poisson(rng: random.Random, lam: float) -> int:
    # Knuth for small means, normal approximation above
    if lam > 50:
        return max(0, round(rng.gauss(lam, math.sqrt(lam))))
    k, p, limit = 0, 1.0, math.exp(-lam)
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1


def test_rows_add_up_sizes_to_colours_and_colours_to_the_category() -> None:
    rng = random.Random(1)
    cells = {(c, s, b): [float(_poisson(rng, 3 + i)) for _ in range(40)]
             for i, (c, s, b) in enumerate([("red", "S", "0-10"), ("red", "M", "0-10"),
                                            ("blue", "S", "10-20"), ("blue", "L", "0-10")])}
    fc = forecast_category(cells, MONDAY)
    assert fc is not None
    total = fc.rows[("total", "")].cum_mean
    for dim in ("color", "size", "price_band"):
        parts = [r.cum_mean for (d, _), r in fc.rows.items() if d == dim]
        for h in (0, 13, 89):
            assert math.isclose(sum(p[h] for p in parts), total[h], rel_tol=1e-9)
    assert all(b >= a for a, b in pairwise(total))


def test_a_flat_series_stays_flat_and_a_trend_is_followed() -> None:
    rng = random.Random(2)
    flat = {("x", "M", "0-10"): [float(_poisson(rng, 100)) for _ in range(56)]}
    fc = forecast_category(flat, MONDAY)
    assert fc is not None and fc.profile.growth == 0.0
    mean, sd = fc.rows[("total", "")].total(14)
    assert abs(mean - 1400) < 100 and 0 < sd < 200
    grow = {("x", "M", "0-10"): [float(_poisson(rng, 100 * 1.02 ** t)) for t in range(56)]}
    fc = forecast_category(grow, MONDAY)
    assert fc is not None and fc.profile.model == "trend"
    assert abs(fc.profile.growth - math.log(1.02)) < 0.004
    truth = sum(100 * 1.02 ** t for t in range(56, 70))
    mean, sd = fc.rows[("total", "")].total(14)
    assert abs(mean - truth) / truth < 0.08 and abs(mean - truth) < 3 * sd


def test_weekday_pattern_and_promotion_days() -> None:
    rng = random.Random(3)
    weekday = (0.7, 0.8, 0.9, 1.0, 1.1, 1.4, 1.1)
    promo_days = [MONDAY + d for d in (12, 26, 40, 58)]
    cal = PromotionCalendar.parse(",".join(date.fromordinal(d).isoformat() for d in promo_days))
    ys = []
    for t in range(56):
        lam = 200 * weekday[t % 7] * (3.0 if MONDAY + t in promo_days else 1.0)
        ys.append(float(_poisson(rng, lam)))
    fc = forecast_category({("x", "M", "0-10"): ys}, MONDAY, cal)
    assert fc is not None
    for w, f in zip(weekday, fc.profile.weekday, strict=True):
        assert abs(f - w / (sum(weekday) / 7)) < 0.08
    assert abs(fc.profile.uplift - 3.0) < 0.3 and fc.profile.uplift_days == 3
    # day 58 is two days ahead of day 56 (index 55 is the last): promotion, a Wednesday
    r = fc.rows[("total", "")]
    day2 = r.cum_mean[2] - r.cum_mean[1]
    day1 = r.cum_mean[1] - r.cum_mean[0]
    assert day2 > 2.5 * day1 * weekday[2] / weekday[1]
    # a stated factor wins over the estimate
    stated = PromotionCalendar.parse(",".join(
        date.fromordinal(d).isoformat() for d in promo_days[:-1])
        + f",{date.fromordinal(promo_days[-1]).isoformat()}*5")
    fc5 = forecast_category({("x", "M", "0-10"): ys}, MONDAY, stated)
    assert fc5 is not None
    r5 = fc5.rows[("total", "")]
    assert abs((r5.cum_mean[2] - r5.cum_mean[1]) / day2 - 5 / fc.profile.uplift) < 0.05


def test_a_new_cell_is_not_diluted_by_the_days_before_it_existed() -> None:
    rng = random.Random(4)
    old = [float(_poisson(rng, 50)) for _ in range(42)]
    new = [0.0] * 38 + [float(_poisson(rng, 80)) for _ in range(4)]
    fc = forecast_category({("a", "M", "0-10"): old, ("b", "M", "0-10"): new}, MONDAY)
    assert fc is not None
    mean, _ = fc.rows[("color", "b")].total(10)
    assert 600 < mean < 1000  # about 80 a day, not 80 x 4 / 28


def test_a_category_grows_with_its_market_when_too_small_to_show_it() -> None:
    rng = random.Random(5)
    market = [float(_poisson(rng, 3000 * 1.015 ** t)) for t in range(42)]
    prior = market_growth(market, MONDAY)
    assert prior is not None and abs(prior[0] - math.log(1.015)) < 0.002
    small = {("a", "M", "0-10"): [float(_poisson(rng, 4 * 1.015 ** t)) for t in range(42)]}
    fc = forecast_category(small, MONDAY, prior=prior)
    assert fc is not None and fc.profile.model == "market trend"
    assert fc.profile.growth == prior[0]
    assert forecast_category(small, MONDAY).profile.growth == 0.0  # type: ignore[union-attr]


def test_short_history_gives_an_interval_not_zero_to_infinity() -> None:
    cells = {("a", "M", "0-10"): [0.0, 0.0, 12.0, 9.0, 14.0]}
    fc = forecast_category(cells, MONDAY, cfg=ForecastConfig(horizon_days=30))
    assert fc is not None
    mean, sd = fc.rows[("total", "")].total(30)
    assert 250 < mean < 450 and mean - 1.96 * sd > 0 and mean + 1.96 * sd < 3 * mean


def test_nothing_sold_is_no_forecast() -> None:
    assert forecast_category({}, MONDAY) is None
    assert forecast_category({("a", "M", "0-10"): [0.0] * 10}, MONDAY) is None


def test_promotion_calendar_syntax() -> None:
    cal = PromotionCalendar.parse(" 2026-11-11*4, 2026-06-16..2026-06-18 ,")
    assert cal.is_promo(date(2026, 11, 11).toordinal())
    assert cal.factor(date(2026, 11, 11).toordinal()) == 4.0
    assert cal.is_promo(date(2026, 6, 17).toordinal())
    assert cal.factor(date(2026, 6, 17).toordinal()) is None
    assert not cal.is_promo(date(2026, 6, 19).toordinal())
    assert cal.describe() == "2026-06-16,2026-06-17,2026-06-18,2026-11-11*4"
    assert not PromotionCalendar.parse("")
    for bad in ("2026-13-01", "2026-11-11*x", "2026-11-11*0", "2026-06-18..2026-06-16",
                "2026-01-01..2026-12-31", "11/11"):
        with pytest.raises(PromotionSyntaxError, match=bad.split("*")[0][:7]):
            PromotionCalendar.parse(bad)


def test_element_wise_sums_add_left_to_right() -> None:
    """The model's row and day totals (``_vsum``) add each position left to right from the
    integer 0, as the per-position ``sum`` they replaced did on Python 3.11 (the version
    the product ships with): the same floats to the last bit, so the faster totals did not
    move a forecast there. A vector of another length is refused."""
    from functools import reduce
    from operator import add

    from streams.core.forecast import _vsum

    rng = random.Random(3)
    for _ in range(200):
        n = rng.randint(1, 30)
        vectors = [[rng.choice([0.0, -0.0, 1e16, 1.0, rng.random() * 10 ** rng.randint(-8, 8)])
                    for _ in range(n)] for _ in range(rng.randint(0, 9))]
        want = [reduce(add, (v[t] for v in vectors), 0) for t in range(n)]
        got = _vsum(vectors, n)
        assert [math.copysign(1, x) for x in got] == [math.copysign(1, x) for x in want]
        assert got == want
    with pytest.raises(ValueError, match="a vector of 2 values, not 3"):
        _vsum([[1.0, 2.0, 3.0], [1.0, 2.0]], 3)
