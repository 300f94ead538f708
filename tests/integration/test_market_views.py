"""The market views of migrations 0010 and 0011 in the real engine: market_demand and
market_rolling (the fold stored by the refresh of the windows, and of the rolling horizons)
fold exactly as streams.core.kanon.fold does (random cells, several k), and the serving
refresh fills each cell's contributors from the engine's shop rows."""

from __future__ import annotations

import itertools
import random
from datetime import UTC, datetime
from typing import Any

import pytest

from streams.clickhouse import market, serving
from streams.clickhouse.migrations import migrate
from streams.core.kanon import Row, fold, shop_tag

pytestmark = pytest.mark.integration

_names = itertools.count()
T0 = 1_762_790_400  # 2025-11-10 16:00 UTC, a window start of every size
SHOPS = [shop_tag(random.Random(i).getrandbits(64), f) for i in range(6) for f in (0, 1, 2)]
DIMS = (["袜子", "杯子", "毛巾"], ["红", "雾霾蓝", "black"], ["M", "L"], ["0-10", "10-20"],
        ["浙江", "广东", "江苏"])


def _db(client: Any) -> str:
    db = f"mkt{next(_names)}"
    migrate(client, db)
    return db


def _random_cells(rng: random.Random, windows: list[int], size: int) -> list[list[Any]]:
    cells = {}
    for w in windows:
        for _ in range(rng.randint(5, 40)):
            key = tuple(rng.choice(d) for d in DIMS)
            tags = sorted(set(rng.sample(SHOPS, rng.randint(1, 5))))
            sellers = any(t % 4 == 0 for t in tags)
            viewers = any(t % 4 == 1 for t in tags)
            returns = any(t % 4 == 2 for t in tags)
            units = rng.randint(1, 9) if sellers else 0
            cells[(w, key)] = [
                size, datetime.fromtimestamp(w, UTC), datetime.fromtimestamp(w + size, UTC),
                *key, units, units, units * 125_000, rng.randint(1, 2) if returns else 0,
                rng.randint(0, 1) if returns else 0, rng.randint(1, 30) if viewers else 0,
                0, tags, 1,
            ]
    return list(cells.values())


def _python_fold(rows: list[list[Any]], k: int) -> set[tuple[Any, ...]]:
    folded = fold(
        [Row(tuple(r[3:8]), (r[8], r[9], r[10], r[11], r[12], r[13]), frozenset(r[15]),
             group=(r[1],)) for r in rows], k)
    return {(int(r.group[0].timestamp()), *r.key, r.level, *r.measures)  # type: ignore[attr-defined]
            for r in folded}


@pytest.mark.parametrize("k", [1, 2, 3, 4])
def test_market_demand_folds_like_the_reference(engine_client: Any, k: int) -> None:
    db = _db(engine_client)
    rng = random.Random(k)
    windows = [T0 + i * 3600 for i in range(4)]
    rows = _random_cells(rng, windows, 3600)
    engine_client.insert(f"{db}.demand_cells", rows, column_names=serving.CELL_COLUMNS)
    engine_client.insert(f"{db}.pipeline_settings", [["min_shops", k]],
                         column_names=["name", "value"])
    assert market.refresh_market(engine_client, db, [(3600, w) for w in windows]) == 4
    got = {
        tuple(r) for r in engine_client.query(
            "SELECT toUnixTimestamp(window_start), category, color, size, price_band, region, "
            f"fold_level, orders, units, toInt64(round(gmv * 10000)), cancelled_units, "
            f"returned_units, pageviews FROM {db}.market_demand(seconds=3600, "
            "from_s={lo:Int64}, to_s={hi:Int64})",
            parameters={"lo": windows[0], "hi": windows[-1] + 3600}).result_rows
    }
    want = _python_fold(rows, k)
    assert got == want
    assert any(r[6] > 0 for r in got) or k == 1  # something was folded
    # a range reads only its windows
    one = engine_client.query(
        f"SELECT DISTINCT toUnixTimestamp(window_start) FROM {db}.market_demand("
        "seconds=3600, from_s={lo:Int64}, to_s={hi:Int64})",
        parameters={"lo": windows[1], "hi": windows[2]}).result_rows
    assert one in ([(windows[1],)], [])


def test_market_rolling_folds_demand_rolling(engine_client: Any) -> None:
    """market_rolling = the fold of demand_rolling's rows (with their contributors) per
    horizon, and demand_rolling's contributors are the union over its windows."""
    db = _db(engine_client)
    rng = random.Random(11)
    hours = [T0 + i * 3600 for i in range(30)]
    rows = _random_cells(rng, hours, 3600)
    fives = _random_cells(rng, [hours[-1] + i * 300 for i in range(12)], 300)
    engine_client.insert(f"{db}.demand_cells", rows + fives, column_names=serving.CELL_COLUMNS)
    engine_client.insert(f"{db}.pipeline_settings", [["min_shops", 3]],
                         column_names=["name", "value"])
    newest_ms = (hours[-1] + 3599) * 1000
    engine_client.insert(f"{db}.checkpoints", [["shop.orders", 0, 10, newest_ms, 1, 1, 0, 0, 0,
                                                newest_ms]],
                         column_names=["source_topic", "source_partition", "position", "max_ts",
                                       "consumed", "processed", "dead_lettered", "duplicates",
                                       "late", "watermark"])
    market.refresh_periodic(engine_client, db)
    base = engine_client.query(
        "SELECT horizon, category, color, size, price_band, region, orders, units, "
        f"toInt64(round(gmv * 10000)), cancelled_units, returned_units, pageviews, shops "
        f"FROM {db}.demand_rolling").result_rows
    assert {r[0] for r in base} == {"1h", "24h", "7d"}
    # contributors of a 24 h row: the union of its hours'
    sample = next(r for r in base if r[0] == "24h")
    union = set().union(*(set(c[15]) for c in rows if tuple(c[3:8]) == tuple(sample[1:6])
                          and c[1].timestamp() >= hours[-1] - 23 * 3600))
    assert set(sample[12]) == union
    want = {(r.group[0], *r.key, r.level, *r.measures)
            for r in fold([Row(tuple(b[1:6]), tuple(b[6:12]), frozenset(b[12]), group=(b[0],))
                           for b in base], 3)}
    got = {tuple(r) for r in engine_client.query(
        "SELECT horizon, category, color, size, price_band, region, fold_level, orders, units, "
        "toInt64(round(gmv * 10000)), cancelled_units, returned_units, pageviews "
        f"FROM {db}.market_rolling").result_rows}
    assert got == want and got
