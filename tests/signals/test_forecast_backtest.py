"""Issue 20's forecast targets on the rolling-origin backtest (``tests.signals.backtest``):
WAPE at least 20% below the trailing mean on the trend, weekly and promotion scenarios,
no worse on steady, 95% interval coverage between 90% and 98% on every scenario."""

from __future__ import annotations

import pytest

from tests.signals.backtest import SCENARIOS, Score, backtest


@pytest.fixture(scope="module")
def results() -> dict[str, dict[str, Score]]:
    return {name: backtest(name) for name in SCENARIOS}


@pytest.mark.parametrize("name", ["trend", "weekly", "promotion"])
def test_forecast_beats_the_trailing_mean_by_a_fifth(
    results: dict[str, dict[str, Score]], name: str
) -> None:
    s = results[name]
    assert s["forecast"].wape <= 0.8 * s["trailing mean"].wape, (
        name, s["forecast"].wape, s["trailing mean"].wape)
    assert s["forecast"].mean_mase < s["trailing mean"].mean_mase
    assert s["forecast"].mean_mase < s["seasonal naive"].mean_mase


@pytest.mark.parametrize("name", ["steady", "new product"])
def test_forecast_is_no_worse_where_there_is_nothing_to_model(
    results: dict[str, dict[str, Score]], name: str
) -> None:
    s = results[name]
    assert s["forecast"].wape <= s["trailing mean"].wape, (
        name, s["forecast"].wape, s["trailing mean"].wape)


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_the_95_percent_interval_covers_90_to_98_percent(
    results: dict[str, dict[str, Score]], name: str
) -> None:
    s = results[name]["forecast"]
    assert s.intervals > 100
    assert 0.90 <= s.coverage <= 0.98, (name, s.coverage)
