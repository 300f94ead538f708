"""The serving tables: final numbers kept up to date at write time, so that every read is
bounded by the time range it asks for, not by the history held.

Workers write *per source partition*, versioned, absolute values (``demand_state``,
``sku_state``): exactly-once and restorable, but a reader of final numbers would have to
take the newest version of every (cell, partition) and sum over partitions, over all the
history it touches. So whoever writes those rows also *refreshes* the final rows of what
it wrote, in the same flush, before the checkpoint:

- ``demand_cells``: one row per (window, cell) after merges, the sum over partitions of
  each partition's newest version, plus ``unique_visitors`` (``uniqExact`` over
  ``visitor_cells``), ``shops`` (the distinct contributor tags of ``shop_cells``: who may
  see the cell in the market views, ``streams.core.kanon``) and the window's end in the
  market's time zone;
- ``sku_hours``: one row per (hour, SKU), the same for the SKU counters (the stock count
  of the hour is the latest over partitions).

Both are ``ReplacingMergeTree(version)`` where ``version`` is the *sum over partitions of
the newest version read*. Every partition's newest version only grows, so a refresh that
read later state has a version at least as high: two writers refreshing the same cell at
once (workers writing their own partitions to one ClickHouse server) leave the row of the
one that saw both flushes (each refresh starts after its own insert returned, so at least
one of the two reads both). Equal versions mean the same rows were read. Readers use
``FINAL`` (or the views ``demand_by_attribute``, ``sku_hourly``), with the primary key
pruning the time range.

Crash safety: the refresh runs after the flush's rows and before its checkpoint. A crash in
between leaves rows above the last checkpoint; the restarted worker reprocesses from the
checkpoint, rewrites those cells (same values, as before) and refreshes them again.

Only the cells of the flush are refreshed: the flush's rows are found by their (partition,
version) within the windows (hours) they touch, which the primary key narrows down.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from streams.core.calendar import HOUR, MarketCalendar
from streams.core.demand import MEASURES

#: The key of a cell, in the primary-key order of demand_state and demand_cells.
CELL_KEY = "window_seconds, window_start, category, color, size, price_band, region"
SKU_COUNTERS = (
    "orders", "units", "cancelled_units", "returned_units", "pageviews", "restock_shipped",
    "restock_received",
)
CELL_COLUMNS = [
    "window_seconds", "window_start", "window_end", "category", "color", "size", "price_band",
    "region", *MEASURES, "unique_visitors", "shops", "version",
]
SKU_COLUMNS = [
    "hour_start", "sku", *SKU_COUNTERS, "count_ts", "count_on_hand", "version",
]


#: ClickHouse types of the measures (all counters are UInt64 but GMV, which can be negative)
MEASURE_TYPES = {m: ("Int64" if m == "gmv_e4" else "UInt64") for m in MEASURES}
_BASE_KEY = "category, color, size, price_band, region"


def _cells_select(
    db: str, where: str, end: str, end_join: str = "", shops: bool = True
) -> str:
    """Final cells for the demand_state rows matching ``where`` (over whole cells); without
    ``shops`` as before migration 0010 (no contributors: its upgrade step of 0007 runs on a
    database that has no shop_cells yet).

    One aggregation over the union of the three sources (each partition's newest
    numbers, the visitor rows, the contributor rows), not three aggregations joined on
    the seven key columns: the same rows, a third less time (bench/RESULTS.md)."""
    newest = ", ".join(f"argMax({m}, version) AS p_{m}" for m in MEASURES)
    zeros = ", ".join(f"CAST(0, '{t}') AS p_{m}" for m, t in MEASURE_TYPES.items())
    summed = ", ".join(f"sum(p_{m}) AS {m}" for m in MEASURES)
    # visitor_cells and shop_cells keep the key in LowCardinality columns
    other_key = "window_seconds, window_start, " + ", ".join(
        f"toString({k}) AS {k}" for k in _BASE_KEY.split(", "))
    shops_part = f"""
    UNION ALL
    SELECT {other_key}, 2 AS src, {zeros}, toUInt64(0) AS p_version, shop_tag AS h
    FROM {db}.shop_cells
    WHERE {where}""" if shops else ""  # noqa: S608 - identifiers only
    return f"""
SELECT c.window_seconds, c.window_start, {end} AS window_end, c.category, c.color, c.size,
       c.price_band, c.region, {', '.join(f'c.{m}' for m in MEASURES)},
       c.unique_visitors, {'c.shops, ' if shops else ''}c.version
FROM
(
    SELECT {CELL_KEY}, {summed}, uniqExactIf(h, src = 1) AS unique_visitors,
           arraySort(groupUniqArrayIf(h, src = 2)) AS shops, sum(p_version) AS version
    FROM
    (
        SELECT {CELL_KEY}, 0 AS src, {newest}, max(version) AS p_version, toUInt64(0) AS h
        FROM {db}.demand_state
        WHERE {where}
        GROUP BY {CELL_KEY}, source_topic, source_partition
        UNION ALL
        SELECT {other_key}, 1 AS src, {zeros}, toUInt64(0) AS p_version, visitor_hash AS h
        FROM {db}.visitor_cells
        WHERE {where}{shops_part}
    )
    GROUP BY {CELL_KEY}
    HAVING countIf(src = 0) > 0
) AS c
{end_join}
"""  # noqa: S608 - identifiers and constant SQL only


def _sku_select(db: str, where: str) -> str:
    newest = ", ".join(f"argMax({m}, version) AS p_{m}" for m in (
        *SKU_COUNTERS, "count_ts", "count_on_hand"))
    summed = ", ".join(f"sum(p_{m})" for m in SKU_COUNTERS)
    return f"""
SELECT hour_start, sku, {summed}, max(p_count_ts),
       argMax(p_count_on_hand, (p_count_ts, p_count_on_hand)), sum(p_version)
FROM
(
    SELECT hour_start, sku, source_topic, source_partition, {newest}, max(version) AS p_version
    FROM {db}.sku_state
    WHERE {where}
    GROUP BY hour_start, sku, source_topic, source_partition
)
GROUP BY hour_start, sku
"""  # noqa: S608 - identifiers and constant SQL only


def refresh_cells_sql(db: str) -> str:
    """INSERT of the final rows of the cells a flush wrote. Parameters: ``w`` the windows
    it touched (size, start), ``b`` those with their ends, ``v`` its (topic, partition,
    version) triples."""
    # the cells are matched by a 64-bit hash of their key (a set of integers is much
    # cheaper than one of 7-tuples); a collision only refreshes one cell more
    flushed = (
        f"SELECT cityHash64({CELL_KEY}) FROM {db}.demand_state "  # noqa: S608
        "WHERE (window_seconds, window_start) IN {w:Array(Tuple(UInt32, DateTime))} "
        "AND (source_topic, source_partition, version) IN "
        "{v:Array(Tuple(String, UInt16, UInt64))}"
    )
    where = (
        "(window_seconds, window_start) IN {w:Array(Tuple(UInt32, DateTime))} "
        f"AND cityHash64({CELL_KEY}) IN ({flushed})"
    )
    ends = (
        "INNER JOIN (SELECT b.1 AS window_seconds, b.2 AS window_start, b.3 AS end "
        "FROM (SELECT arrayJoin({b:Array(Tuple(UInt32, DateTime, DateTime))}) AS b)) AS e "
        "ON c.window_seconds = e.window_seconds AND c.window_start = e.window_start"
    )
    return (f"INSERT INTO {db}.demand_cells ({', '.join(CELL_COLUMNS)})"
            + _cells_select(db, where, "e.end", ends))


def refresh_sku_sql(db: str) -> str:
    """INSERT of the final rows of the SKU hours a flush wrote. Parameters: ``h`` the hours
    it touched, ``v`` its (topic, partition, version) triples."""
    flushed = (
        f"SELECT cityHash64(hour_start, sku) FROM {db}.sku_state "  # noqa: S608
        "WHERE hour_start IN {h:Array(DateTime)} "
        "AND (source_topic, source_partition, version) IN "
        "{v:Array(Tuple(String, UInt16, UInt64))}"
    )
    where = (
        "hour_start IN {h:Array(DateTime)} "
        f"AND cityHash64(hour_start, sku) IN ({flushed})"
    )
    return f"INSERT INTO {db}.sku_hours ({', '.join(SKU_COLUMNS)})" + _sku_select(db, where)


def window_end_sql(tz: str) -> str:
    """A window's end from its size and start, in SQL: what ``MarketCalendar.end_of``
    gives (the refresh passes the calendar's ends; a rebuild, which has no engine, uses
    this; tests check that both agree across daylight-saving changes). ``tz`` is a
    validated zone name: a day ends at the next local midnight, a shorter window at its
    size or at that midnight, whichever is first."""
    if not re.fullmatch(r"[A-Za-z0-9_+\-/]+", tz):
        raise ValueError(f"bad time zone name {tz!r}")
    local = f"toTimeZone(c.window_start, '{tz}')"
    return (
        f"if(c.window_seconds >= 86400, "
        f"toStartOfDay({local}) + toIntervalDay(intDiv(c.window_seconds, 86400)), "
        f"least(c.window_start + c.window_seconds, toStartOfDay({local}) + toIntervalDay(1)))"
    )


def rebuild_cells_sql(db: str, tz: str, shops: bool = True) -> str:
    """INSERT of the final rows of every cell of one month (parameter ``m``: YYYYMM of the
    window start in UTC): fills ``demand_cells`` from ``demand_state`` (the upgrade of a
    database from before the serving tables in ``migrate``, ``DemandStore.rebuild_serving``)."""
    columns = [c for c in CELL_COLUMNS if shops or c != "shops"]
    return (f"INSERT INTO {db}.demand_cells ({', '.join(columns)})"
            + _cells_select(db, "toYYYYMM(window_start, 'UTC') = {m:UInt32}",
                            window_end_sql(tz), shops=shops))


def rebuild_sku_sql(db: str) -> str:
    """INSERT of the final rows of every SKU hour of one month (parameter ``m``)."""
    return (f"INSERT INTO {db}.sku_hours ({', '.join(SKU_COLUMNS)})"
            + _sku_select(db, "toYYYYMM(hour_start, 'UTC') = {m:UInt32}"))


def _dt(s: int) -> datetime:
    return datetime.fromtimestamp(s, UTC)


class RefreshSet:
    """What the next refresh covers: the windows, SKU hours and (topic, partition,
    version) triples of every flush written since the last refresh (the store refreshes
    after one flush, or after several whose checkpoints it held back, in one statement)."""

    __slots__ = ("hours", "sku_versions", "versions", "windows")

    def __init__(self) -> None:
        self.windows: set[tuple[int, int]] = set()
        self.versions: set[tuple[str, int, int]] = set()
        self.hours: set[int] = set()
        self.sku_versions: set[tuple[str, int, int]] = set()

    def add(self, rows: Sequence[Sequence[Any]], sku_rows: Sequence[Sequence[Any]]) -> None:
        """A flush's demand_state and sku_state rows."""
        self.windows.update((r[2], r[3]) for r in rows)
        self.versions.update((r[0], r[1], r[-1]) for r in rows)
        self.hours.update(r[3] for r in sku_rows)
        self.sku_versions.update((r[0], r[1], r[-1]) for r in sku_rows)

    def __bool__(self) -> bool:
        return bool(self.versions or self.sku_versions)

    def input_hours(self) -> list[datetime]:
        """The hours whose alert inputs the refresh may change: its SKU hours and the
        starts of its hourly windows (written with the publish's checkpoints, migration
        0012: a reader learns from them which hours to read again)."""
        hours = self.hours | {t for s, t in self.windows if s == HOUR}
        return [_dt(h) for h in sorted(hours)]

    def params(
        self, calendar: MarketCalendar
    ) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
        """The parameters of ``refresh_cells_sql`` and ``refresh_sku_sql`` (None: nothing
        to refresh)."""
        cells = None
        if self.versions:
            windows = sorted(self.windows)
            cells = {
                "w": [(s, _dt(t)) for s, t in windows],
                "b": [(s, _dt(t), _dt(calendar.end_of(s, t))) for s, t in windows],
                "v": sorted(self.versions),
            }
        skus = None
        if self.sku_versions:
            skus = {
                "h": [_dt(h) for h in sorted(self.hours)],
                "v": sorted(self.sku_versions),
            }
        return cells, skus


def months(client: Any, db: str, table: str) -> list[int]:
    """The monthly partitions (YYYYMM) ``table`` holds rows in, from its active parts."""
    rows = client.query(
        "SELECT DISTINCT partition FROM system.parts WHERE database = {d:String} "
        "AND table = {t:String} AND active ORDER BY partition",
        parameters={"d": db, "t": table},
    ).result_rows
    return [int(r[0]) for r in rows if str(r[0]).isdigit()]


def rebuild(client: Any, db: str, tz: str, shops: bool = True) -> None:
    """Recompute every serving row from the per-partition state tables, month by month
    (bounded memory). Safe to run at any time: a rebuilt row has the same version as the
    refreshed one it equals, and a newer refresh keeps winning. ``shops``: fill the cells'
    contributors and re-fold the market rows (``streams.clickhouse.market``; False only
    before migrations 0010 and 0011)."""
    cells = rebuild_cells_sql(db, tz, shops)
    for month in months(client, db, "demand_state"):
        client.command(cells, parameters={"m": month})
    skus = rebuild_sku_sql(db)
    for month in months(client, db, "sku_state"):
        client.command(skus, parameters={"m": month})
    if shops:
        from streams.clickhouse import market

        market.rebuild(client, db)
