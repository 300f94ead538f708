"""Market signals reveal no single shop (issue 22): with C2M_MIN_SHOPS_PER_SIGNAL = k, every
published change of a surge or rising share comes from at least k shops' orders, counted
here straight from the raw events; per-factory restock alerts are not affected."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import pytest

from streams.core.alerting.book import Alert
from streams.core.alerting.evaluator import AlertConfig, AlertEvaluator, PreparedInputs
from streams.core.calendar import MarketCalendar
from streams.core.pricebands import PriceBands
from streams.sim.model import DAY_MS, HOUR_MS, ShopSimulator
from streams.sim.scenario import Scenario
from tests.signals.reference import reference_inputs, ts_ms

START_MS = 1_772_323_200_000  # 2026-03-01T00:00:00Z
K = 3


@pytest.fixture(scope="module")
def market() -> tuple[list[Any], dict[int, list[Alert]]]:
    # a market where a colour is sold by several shops (12 shops, 240 SKUs)
    sim = ShopSimulator(7, START_MS, n_shops=12, n_skus=240, orders_per_hour=300,
                        scenario=Scenario(surge_start_ms=START_MS + 2 * DAY_MS + 2 * HOUR_MS))
    events = sim.catalog() + sim.events(START_MS + 3 * DAY_MS)
    prep = PreparedInputs(reference_inputs(events))
    assert prep.first_hour is not None
    out = {}
    for k in (0, K):
        ev = AlertEvaluator(AlertConfig(min_shops=k))
        out[k] = [a for h in range(prep.first_hour, START_MS // 1000 + 3 * 86_400, 3600)
                  for a in ev.evaluate(h, prep)]
    return events, out


def _order_shops(events: list[Any]) -> dict[tuple[str, str, str], dict[int, set[str]]]:
    """(category, dimension, value) -> hour -> shops with orders there, from raw events."""
    bands = PriceBands()
    products = {e.value["sku"]: e.value for e in events
                if e.value["event_type"] == "product_upsert"}
    out: dict[tuple[str, str, str], dict[int, set[str]]] = defaultdict(lambda: defaultdict(set))
    for e in events:
        v = e.value
        if v["event_type"] != "order_placed":
            continue
        h = ts_ms(v["ts"]) // 3_600_000 * 3600
        for line in v["lines"]:
            p = products[line["sku"]]
            for dim, value in (("color", p["color"]), ("size", p["size"]),
                               ("price_band", bands.label(p["list_price"]))):
                out[(p["category"], dim, value)][h].add(v["shop_id"])
    return out


def test_every_market_signal_comes_from_k_shops(
    market: tuple[list[Any], dict[int, list[Alert]]],
) -> None:
    events, alerts = market
    shops = _order_shops(events)
    cal = MarketCalendar("UTC")
    first = min(h for by_hour in shops.values() for h in by_hour) + 3600
    signals = [a for a in alerts[K] if a.kind != "restock"]
    assert signals, "the market has signals from enough shops"
    for a in signals:
        key = (a.category, a.dimension, a.value)
        h = a.window_start

        def count(hours: list[int], key: tuple[str, str, str] = key) -> int:
            return len(set().union(*(shops[key].get(t, set()) for t in hours)))

        if a.kind == "surge":
            assert count([h]) >= K, a
            back = [t for d in range(1, 8) if (t := cal.same_hour_days_back(h, d)) >= first]
            assert not back or count(back) >= K, a
        elif a.kind == "rising_share":
            assert count(list(range(h + 3600 - 86_400, h + 3600, 3600))) >= K, a
    # the rule withheld something the rules alone would have published ...
    plain = {(a.alert_id, a.version) for a in alerts[0] if a.kind != "restock"}
    assert len(plain) > len(signals)
    # ... and left the factories' own restock alerts alone
    assert [a for a in alerts[K] if a.kind == "restock"] == [
        a for a in alerts[0] if a.kind == "restock"]


def test_market_signals_name_no_factory(market: tuple[list[Any], dict[int, list[Alert]]]) -> None:
    _, alerts = market
    for a in alerts[K]:
        assert a.factories == ((a.factory_id,) if a.kind == "restock" else ()), a
