"""Read queries of the built-in web view (``/view``, ``/api/view/{name}``).

Every query is a constant: column names come from :data:`DIMENSIONS` (never from a
request), request values travel as bound parameters (``{name:Type}``), and the database
is the validated identifier from the settings. A request's arguments are checked by the
query's ``args`` function before anything runs.

Adding a section to the web view = one entry in :data:`QUERIES` plus a
``<section data-view="name" data-render="table">`` in ``streams/web/view.html`` (the
``table`` renderer shows any query; write a new renderer only for a new chart type).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from streams.clickhouse.errors import sink_error
from streams.core.tokens import OPERATOR, Scope

DIMENSIONS = ("category", "color", "size", "price_band", "region")
HORIZONS = ("1h", "24h", "7d")
WINDOWS = (300, 3600, 86400)


class BadRequest(ValueError):
    """A request argument is missing or not allowed (HTTP 400)."""


def _choice(args: Mapping[str, str], name: str, allowed: tuple[Any, ...], default: Any) -> Any:
    raw = args.get(name)
    if raw is None:
        return default
    for value in allowed:
        if str(value) == raw:
            return value
    raise BadRequest(f"{name} must be one of {', '.join(map(str, allowed))}")


def int_arg(args: Mapping[str, str], name: str, default: int, lo: int, hi: int) -> int:
    """An integer query argument in [lo, hi] (BadRequest otherwise), ``default`` when
    absent."""
    raw = args.get(name)
    if raw is None:
        return default
    # ASCII digits only (str.isdigit also takes '²', '①' and other scripts' digits)
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 9) or not lo <= int(raw) <= hi:
        raise BadRequest(f"{name} must be an integer in [{lo}, {hi}]")
    return int(raw)



@dataclass(frozen=True)
class ViewQuery:
    #: SQL per variant (key: a dimension, or "" when the query has none); ``{db}`` is
    #: replaced by the database identifier, ``{x:Type}`` are bound parameters.
    sql: Mapping[str, str]
    #: request arguments -> (variant, bound parameters); raises BadRequest
    args: Callable[[Mapping[str, str]], tuple[str, dict[str, Any]]]


# The demand sections are market-level for every caller (issue 22): they read the market
# views (migration 0010), where a cell that fewer than C2M_MIN_SHOPS_PER_SIGNAL shops made is
# folded into its parent (dimensions '', shown as '其他 other') or withheld.

_SUMMARY = """
SELECT
    (SELECT newest_ts FROM {db}.event_time_progress)    AS newest_ts_ms,
    (SELECT watermark_ms FROM {db}.event_time_progress) AS watermark_ms,
    max(as_of)                                          AS as_of,
    sum(orders)                                         AS orders,
    sum(units)                                          AS units,
    sum(net_units)                                      AS net_units,
    round(sum(gmv), 2)                                  AS gmv,
    sum(pageviews)                                      AS pageviews
FROM {db}.market_rolling
WHERE horizon = {horizon:String}
"""

_BREAKDOWN = """
SELECT if({dim} = '', '其他 other', {dim}) AS key, sum(units) AS units,
       sum(net_units) AS net_units, sum(orders) AS orders, sum(returned_units) AS returned_units
FROM {db}.market_rolling
WHERE horizon = {horizon:String}
GROUP BY key
ORDER BY units DESC, key
LIMIT {limit:UInt32}
"""

# partial: the window holds the newest event time, so it is not over yet (the page draws
# it apart instead of as a dip)
_SERIES = """
WITH (SELECT toInt64(toUnixTimestamp(window_start)) FROM {db}.demand_cells
      WHERE window_seconds = {window:UInt32}
      ORDER BY window_seconds DESC, window_start DESC LIMIT 1) AS latest,
     toDateTime(intDiv(ifNull((SELECT newest_ts FROM {db}.event_time_progress), 0), 1000))
         AS newest
SELECT toUnixTimestamp(window_start) AS t, if({dim} = '', '其他 other', {dim}) AS key,
       sum(units) AS units, toUInt8(max(window_end) > newest) AS partial
FROM {db}.market_demand(seconds={window:UInt32},
                        from_s=latest - {window:UInt32} * {points:UInt32} + 1, to_s=latest + 1)
WHERE {dim} IN (
      SELECT {dim}
      FROM {db}.market_demand(seconds={window:UInt32},
                              from_s=latest - {window:UInt32} * {points:UInt32} + 1,
                              to_s=latest + 1)
      GROUP BY {dim} ORDER BY sum(units) DESC, {dim} LIMIT {top:UInt32})
GROUP BY t, key
ORDER BY t, key
"""

# hours_24h: the event-time hours the 24 h horizon has actually observed (from the first
# data in it, or its start, to the newest event): the page's trend compares the last hour
# with the hourly average over these hours, and shows none below 2 (with 1 hour of data
# the "average" is that hour spread over 24: a trend of 24x).
_ROLLING = """
WITH
    intDiv(ifNull((SELECT newest_ts FROM {db}.event_time_progress), 0), 1000) AS newest_s,
    (SELECT toInt64(toUnixTimestamp(window_end)) FROM {db}.demand_cells
     WHERE window_seconds = 3600 AND window_start <= toDateTime(newest_s)
     ORDER BY window_seconds DESC, window_start DESC LIMIT 1) AS end_1h,
    (SELECT toInt64(toUnixTimestamp(window_start)) FROM {db}.demand_cells
     WHERE window_seconds = 300 AND window_start >= toDateTime(end_1h - 86400)
     ORDER BY window_seconds, window_start LIMIT 1) AS first_s
SELECT if(category = '', '其他 other', category) AS category, color, size, price_band,
       sumIf(units, horizon = '1h')      AS units_1h,
       sumIf(units, horizon = '24h')     AS units_24h,
       sumIf(units, horizon = '7d')      AS units_7d,
       sumIf(net_units, horizon = '24h') AS net_units_24h,
       sumIf(orders, horizon = '24h')    AS orders_24h,
       round(sumIf(gmv, horizon = '24h'), 2) AS gmv_24h,
       any(greatest(newest_s - greatest(first_s, end_1h - 86400), 0) / 3600) AS hours_24h
FROM {db}.market_rolling
GROUP BY category, color, size, price_band
ORDER BY units_24h DESC, category, color, size, price_band
LIMIT {limit:UInt32}
"""


_ALERTS = """
SELECT changed_at, kind, severity, state, category,
       if(kind = 'restock', sku, concat(dimension, '=', value)) AS subject,
       recommended_qty,
       JSONExtractString(message, 'summary_zh') AS summary_zh,
       JSONExtractString(message, 'summary_en') AS summary_en
FROM {db}.alerts FINAL
WHERE state != 'resolved' AND ({all:Bool} OR kind != 'restock' OR factory_id = {factory:String})
ORDER BY severity = 'critical' DESC, changed_at DESC, alert_id
LIMIT {limit:UInt32}
"""

# The category: the one asked for, else the one with the most net units (a category
# without demand is never picked: no rows then, the page says why); values without net
# units are left out.
_BRIEF = """
WITH b AS (SELECT * FROM {db}.production_brief(days={days:UInt32}, run_days={run_days:UInt32},
                                               factory={factory:String})),
     (SELECT category FROM b WHERE dimension = 'total' AND net_units > 0
      ORDER BY net_units DESC, category LIMIT 1) AS top
SELECT category, dimension, value, recommended_qty, qty_low, qty_high,
       round(share, 4) AS share, net_units, round(conversion_rate, 4) AS conversion,
       round(return_rate, 4) AS return_rate, days_with_data, as_of, lost_units, method,
       forecast_model, round(weekly_growth, 4) AS weekly_growth
FROM b
WHERE category = if({category:String} = '', top, {category:String})
  AND (dimension = 'total' OR net_units > 0)
ORDER BY dimension = 'total' DESC, dimension, net_units DESC, value
LIMIT 40
"""


def text_arg(args: Mapping[str, str], name: str, max_len: int) -> str:
    raw = args.get(name, "")
    if len(raw) > max_len or any(ord(c) < 32 for c in raw):
        raise BadRequest(f"{name} must be at most {max_len} printable characters")
    return raw


def _per_dim(sql: str) -> dict[str, str]:
    return {d: sql.replace("{dim}", d) for d in DIMENSIONS}


QUERIES: dict[str, ViewQuery] = {
    "summary": ViewQuery(
        {"": _SUMMARY},
        lambda a: ("", {"horizon": _choice(a, "horizon", HORIZONS, "24h")}),
    ),
    "breakdown": ViewQuery(
        _per_dim(_BREAKDOWN),
        lambda a: (
            _choice(a, "dim", DIMENSIONS, "color"),
            {"horizon": _choice(a, "horizon", HORIZONS, "24h"),
             "limit": int_arg(a, "limit", 12, 1, 100)},
        ),
    ),
    "series": ViewQuery(
        _per_dim(_SERIES),
        lambda a: (
            _choice(a, "dim", DIMENSIONS, "color"),
            {"window": _choice(a, "window", WINDOWS, 3600),
             "points": int_arg(a, "points", 24, 1, 500),
             "top": int_arg(a, "top", 5, 1, 12)},
        ),
    ),
    "rolling": ViewQuery(
        {"": _ROLLING}, lambda a: ("", {"limit": int_arg(a, "limit", 15, 1, 200)})
    ),
    "alerts": ViewQuery(
        {"": _ALERTS}, lambda a: ("", {"limit": int_arg(a, "limit", 20, 1, 200)})
    ),
    "brief": ViewQuery(
        {"": _BRIEF},
        lambda a: (
            "",
            {"category": text_arg(a, "category", 128), "days": int_arg(a, "days", 14, 1, 365),
             "run_days": int_arg(a, "run_days", 30, 1, 365)},
        ),
    ),
}


def _json_value(v: Any) -> Any:
    if isinstance(v, datetime):  # ClickHouse hands DateTime over as naive UTC
        return (v if v.tzinfo else v.replace(tzinfo=UTC)).isoformat()
    if isinstance(v, date):
        return v.isoformat()
    if isinstance(v, Decimal):
        return float(v)
    return v


class Forbidden(PermissionError):
    """The caller's scope does not cover this view (HTTP 401: a factory token is needed)."""


def scope_params(name: str, scope: Scope) -> dict[str, Any]:
    """The bound parameters that restrict a view to the caller (never from the request):
    ``alerts``: an operator sees every alert, a factory its restock alerts and the market
    signals, the market only the market signals; ``brief``: a factory its own SKUs, the
    operator every factory's; the market has none."""
    if name == "alerts":
        return {"all": scope.kind == "operator", "factory": scope.factory}
    if name == "brief":
        if scope.kind == "market":
            raise Forbidden("the production brief is per factory: send a factory token")
        return {"factory": scope.factory}
    return {}


def run_view(
    client: Any, database: str, name: str, args: Mapping[str, str], scope: Scope = OPERATOR,
) -> dict[str, Any]:
    """Run one view query for ``scope``: {"columns": [...], "rows": [[...], ...]}."""
    query = QUERIES.get(name)
    if query is None:
        raise BadRequest(f"unknown view {name!r}")
    variant, params = query.args(args)
    params = {**params, **scope_params(name, scope)}
    sql = query.sql[variant].replace("{db}", database)
    try:
        result = client.query(sql, parameters=params)
    except Exception as exc:
        raise sink_error(exc, "read", f"view {name}") from exc
    return {
        "columns": list(result.column_names),
        "rows": [[_json_value(v) for v in row] for row in result.result_rows],
    }
