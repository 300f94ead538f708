"""The market fold as the views of migration 0010 computed it at query time, over every
cell of the range (the semantics the stored fold of migration 0011 must keep): the test
oracle for ``market_cells`` and ``market_rolling_cells``.

The SQL is taken from ``deploy/clickhouse/0010_market_privacy.sql`` itself (the view
bodies), so the oracle is exactly what was reviewed and shipped as the query-time fold."""

from __future__ import annotations

from typing import Any

from streams.clickhouse.migrations import load


def _view_body(name: str) -> str:
    (privacy,) = [m for m in load() if m.version == 10 and m.name == "market_privacy"]
    for stmt in privacy.statements:
        if stmt.startswith(f"CREATE OR REPLACE VIEW {{db}}.{name} "):
            return stmt.split("SQL SECURITY DEFINER AS", 1)[1]
    raise AssertionError(f"view {name} not in migration 0010")


#: SELECT of market_demand at query time; parameters seconds, from_s, to_s
DEMAND = _view_body("market_demand")
#: SELECT of market_rolling at query time (over demand_rolling)
ROLLING = _view_body("market_rolling")

COLUMNS = (
    "toUnixTimestamp(window_start), toUnixTimestamp(window_end), category, color, size, "
    "price_band, region, fold_level, orders, units, toInt64(round(gmv * 10000)), "
    "cancelled_units, returned_units, net_units, pageviews"
)
ROLLING_COLUMNS = (
    "horizon, toUnixTimestamp(as_of), category, color, size, price_band, region, fold_level, "
    "orders, units, toInt64(round(gmv * 10000)), cancelled_units, returned_units, net_units, "
    "pageviews"
)


def oracle_demand(
    client: Any, db: str, seconds: int, from_s: int, to_s: int
) -> set[tuple[Any, ...]]:
    """Rows the query-time fold gives for windows of ``seconds`` starting in [from_s, to_s)."""
    sql = f"SELECT {COLUMNS} FROM ({DEMAND.replace('{db}', db)})"
    return {tuple(r) for r in client.query(
        sql, parameters={"seconds": seconds, "from_s": from_s, "to_s": to_s}).result_rows}


def stored_demand(
    client: Any, db: str, seconds: int, from_s: int, to_s: int
) -> set[tuple[Any, ...]]:
    """Rows ``market_demand`` (the stored fold) gives for the same range."""
    sql = (f"SELECT {COLUMNS} FROM {db}.market_demand(seconds={{seconds:UInt32}}, "
           "from_s={from_s:Int64}, to_s={to_s:Int64})")
    return {tuple(r) for r in client.query(
        sql, parameters={"seconds": seconds, "from_s": from_s, "to_s": to_s}).result_rows}


def oracle_rolling(client: Any, db: str) -> set[tuple[Any, ...]]:
    sql = f"SELECT {ROLLING_COLUMNS} FROM ({ROLLING.replace('{db}', db)})"
    return {tuple(r) for r in client.query(sql).result_rows}


def stored_rolling(client: Any, db: str) -> set[tuple[Any, ...]]:
    return {tuple(r) for r in client.query(
        f"SELECT {ROLLING_COLUMNS} FROM {db}.market_rolling").result_rows}
