"""A simulated history through a worker, against the oracle: the history and its Kafka
messages, the oracle's cells, the cells a stopped worker's ClickHouse holds, and the exact
comparison (the oracle, restart, chaos and consumer-lag suites all use them)."""

from __future__ import annotations

from typing import Any

import orjson

from streams.sim.model import SimEvent, generate_history
from tests import oracle

START_MS = 1_793_491_200_000  # 2026-11-01T00:00:00Z
MEASURES = ("orders", "units", "gmv", "cancelled_units", "returned_units", "pageviews",
            "unique_visitors")


def sim_history(seed: int, hours: float, orders_per_hour: float) -> list[SimEvent]:
    return generate_history(seed, START_MS, hours, orders_per_hour=orders_per_hour)


def sim_messages(history: list[SimEvent]) -> list[tuple[str, bytes | None, bytes]]:
    return [(e.topic, e.key.encode(), orjson.dumps(e.value)) for e in history]


def oracle_cells(history: list[SimEvent]) -> dict[tuple[Any, ...], dict[str, float]]:
    products = [e.value for e in history if e.topic == "shop.products"]
    events = [(e.topic, e.value) for e in history if e.topic != "shop.products"]
    return oracle.demand(products, events, timezone=oracle.MARKET_TZ)


def stored_cells(worker: Any, sizes: tuple[int, ...]) -> dict[tuple[Any, ...], dict[str, float]]:
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
