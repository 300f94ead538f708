"""End to end: simulator -> real broker -> `c2m worker` -> chDB, against the plain-Python oracle."""

from __future__ import annotations

import signal
from collections import Counter
from typing import Any

import orjson
import pytest

from streams.sim.model import SimEvent, generate_history
from tests import oracle
from tests.integration.conftest import produce

pytestmark = pytest.mark.integration

START_MS = 1_793_491_200_000  # 2026-11-01T00:00:00Z
MEASURES = ("orders", "units", "gmv", "cancelled_units", "returned_units", "pageviews",
            "unique_visitors")


def _history(seed: int, hours: float, orders_per_hour: float) -> list[SimEvent]:
    return generate_history(seed, START_MS, hours, orders_per_hour=orders_per_hour)


def _messages(history: list[SimEvent]) -> list[tuple[str, bytes | None, bytes]]:
    return [(e.topic, e.key.encode(), orjson.dumps(e.value)) for e in history]


def _expected(history: list[SimEvent]) -> dict[tuple[Any, ...], dict[str, float]]:
    products = [e.value for e in history if e.topic == "shop.products"]
    events = [(e.topic, e.value) for e in history if e.topic != "shop.products"]
    return oracle.demand(products, events, timezone=oracle.MARKET_TZ)


def _actual(worker: Any, sizes: tuple[int, ...]) -> dict[tuple[Any, ...], dict[str, float]]:
    rows = worker.query(
        "SELECT window_seconds, toUnixTimestamp(window_start), category, color, size, "
        "price_band, region, orders, units, gmv, cancelled_units, returned_units, pageviews, "
        "unique_visitors "
        "FROM c2m.demand_by_attribute WHERE has({sizes:Array(UInt32)}, window_seconds)",
        sizes=list(sizes),
    )
    return {tuple(r[:7]): dict(zip(MEASURES, r[7:], strict=True)) for r in rows}


def assert_matches_oracle(
    actual: dict[tuple[Any, ...], dict[str, float]],
    expected: dict[tuple[Any, ...], dict[str, float]],
    sizes: tuple[int, ...],
) -> None:
    want = {k: v for k, v in expected.items() if k[0] in sizes}
    assert set(actual) == set(want), (
        f"cells only in ClickHouse: {sorted(set(actual) - set(want))[:3]}, "
        f"only in oracle: {sorted(set(want) - set(actual))[:3]}"
    )
    for key, w in want.items():
        got = actual[key]
        for m in ("orders", "units", "cancelled_units", "returned_units", "pageviews",
                  "unique_visitors"):
            assert got[m] == w[m], (key, m, got[m], w[m])
        assert abs(got["gmv"] - w["gmv"]) <= 1e-6 * max(abs(w["gmv"]), 1e-9), (key, got, w)


@pytest.mark.slow
def test_demand_by_attribute_equals_oracle(broker: Any, worker_factory: Any) -> None:
    history = _history(seed=11, hours=3.5, orders_per_hour=3500)
    kinds = Counter((e.topic, e.value["event_type"]) for e in history)
    assert kinds[("shop.orders", "order_placed")] >= 10_000
    formats = Counter(type(e.value["ts"]).__name__ for e in history)
    assert formats["int"] and formats["str"]
    produce(broker.bootstrap, _messages(history))

    worker = worker_factory().start()
    demand_events = sum(1 for e in history if e.topic != "shop.products")
    stats = worker.wait_consumed(demand_events, timeout=600)
    assert stats["dead_lettered"] == 0 and stats["late"] == 0
    assert worker.stop() == 0

    sizes = (300, 3600)
    assert_matches_oracle(_actual(worker, sizes), _expected(history), sizes)
    # one row per (window, cell): the view needs no FINAL and no GROUP BY from the caller
    dupes = worker.query(
        "SELECT count() FROM (SELECT window_start, window_seconds, category, color, size, "
        "price_band, region, count() AS n FROM c2m.demand_by_attribute GROUP BY ALL "
        "HAVING n > 1)"
    )
    assert dupes == [(0,)]


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["stop", "kill"])
def test_restart_mid_stream_gives_the_same_numbers(
    broker: Any, worker_factory: Any, tmp_path: Any, sig: int
) -> None:
    history = _history(seed=5, hours=2, orders_per_hour=1500)
    demand_events = sum(1 for e in history if e.topic != "shop.products")
    produce(broker.bootstrap, _messages(history))

    data_dir = tmp_path / "restart"
    first = worker_factory(data_dir).start()
    first.wait_consumed(demand_events // 3)  # still consuming when it is stopped
    first.stop(sig)

    # duplicates of events counted before the stop arrive after it (producer retries)
    retries = [e for e in history if e.topic == "shop.orders"][:200]
    produce(broker.bootstrap, _messages(retries))
    second = worker_factory(data_dir).start()
    stats = second.wait_consumed(demand_events + len(retries))
    assert stats["duplicates"] >= len(retries)
    assert second.stop() == 0

    sizes = (300, 3600, 86400)
    assert_matches_oracle(_actual(second, sizes), _expected(history), sizes)
