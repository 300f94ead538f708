"""The stored market fold: what ``market_demand`` and ``market_rolling`` publish, folded at
write time instead of at every read (issue 22 on issue 17's read budget).

The fold (``streams.core.kanon``: a number set is published only from >= k shops per
family; a cell below that is folded into its parent, region, then colour / size / price
band, then category, or withheld) needs every cell of a window with its contributors, and
window functions over them: 10-50x the cost of reading ``demand_by_attribute`` when done
at query time. So it is stored, as ClickHouse SQL run by the process that writes the
cells (no cell leaves ClickHouse; every value is a bound parameter or a column):

- ``market_cells``: per window, the folded rows (``fold_level`` 0-3) and one *marker* row
  (``fold_level`` 4, no numbers) of each refresh. A refresh re-folds whole windows and
  writes every row of a window with one ``version``: the sum of the window's
  ``demand_cells`` versions it read. Those only grow (each is a sum of partition
  positions), so a refresh that read later cells has a higher version, and equal versions
  mean equal cells. ``market_demand`` reads, per window, the rows of the newest version
  (found from the markers; ``FINAL`` drops re-written duplicates), so a key that moved to
  another fold level, or a window whose rows are all withheld now, leaves no stale row.
  Every window whose cells changed is re-folded by the periodic refresh
  (``refresh_periodic``, ``streams.market_refresh``: every ``C2M_MARKET_REFRESH_SECONDS``
  when a checkpoint moved): the windows shorter than a day in batches, a daily window
  (whose fold reads every cell of the day) alone. Re-folding with every flush cost the
  ingest path 6-8% of its CPU (bench/RESULTS.md); the market rows are instead at most
  one interval (plus one refresh) behind the cells.
- ``market_rolling_cells``: the fold of ``demand_rolling``'s horizons (1 h, 24 h, 7 d),
  per (horizon, as_of), with a marker per refresh and the same kind of version (the sum of
  the versions of the cells in the horizon); ``market_rolling`` reads the newest as_of and
  version of each horizon. Refreshed periodically (``refresh_periodic``: when a checkpoint
  moved since the last one), since every flush moves the horizons.
- Both carry ``k`` (``pipeline_settings`` ``min_shops`` when folded) and the views read
  only rows of the current k: a changed k never shows a fold made for another one; the
  store rebuilds the fold for the new k at start (``ensure_k``).

``tests/integration/test_market_cells.py`` checks the stored rows against the query-time
fold (the SQL the views ran before, kept as the test oracle) and the pure fold.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from streams.core.windows import DEFAULT_WINDOW_SECONDS

log = logging.getLogger(__name__)

#: windows of at least this size are re-folded one statement each (a day's fold is the
#: largest); shorter windows several at once
DAILY_SECONDS = 86_400
#: how far back (from the newest window of a size) the periodic refresh looks for daily
#: windows whose fold is older than their cells: beyond the correction horizon (48 h)
STALE_LOOKBACK_S = 8 * 86_400
#: the same for windows shorter than a day (a 5-minute window changes only inside the
#: correction horizon of 48 h; a replay into older windows rebuilds: ``rebuild``)
SHORT_LOOKBACK_S = 3 * 86_400
#: the sizes shorter than a day the periodic refresh scans by default (a process passes
#: its configured ones: ``C2M_WINDOW_SECONDS``)
SHORT_SIZES = tuple(s for s in DEFAULT_WINDOW_SECONDS if s < DAILY_SECONDS)
#: stale windows shorter than a day re-folded by one statement
SHORT_BATCH = 48
#: windows re-folded by one statement in a rebuild: at most about this many cells
REBUILD_CELLS = 250_000
#: the k the market rows are folded with (what the views filter on): 3 until a process
#: recorded its C2M_MIN_SHOPS_PER_SIGNAL (argMax of no rows would be 0, not NULL)
K_SQL = (
    "toUInt32(ifNull((SELECT argMaxOrNull(value, updated_at) FROM {db}.pipeline_settings "
    "WHERE name = 'min_shops'), 3))"
)
DIMS = ("category", "color", "size", "price_band", "region")
SUMS = ("orders", "units", "gmv_e4", "cancelled_units", "returned_units", "pageviews")
MARKET_COLUMNS = [
    "window_seconds", "window_start", "window_end", *DIMS, "fold_level", *SUMS, "k", "version",
]
ROLLING_COLUMNS = ["horizon", "as_of", *DIMS, "fold_level", *SUMS, "k", "version"]
#: the marker row of a refresh (no numbers), never shown
MARKER_LEVEL = 4
_WINDOW = ("window_seconds", "window_start")


def _k(db: str) -> str:
    return K_SQL.replace("{db}", db)


def _passes(n: int, arr: str) -> str:
    """Distinct shops per family in ``arr`` (contributor tags) and whether they may be
    published: ``streams.core.kanon.publishable`` in SQL."""
    return (f"arrayCount(x -> bitAnd(x, 3) = 0, {arr}) AS o{n}, "
            f"arrayCount(x -> bitAnd(x, 3) = 1, {arr}) AS v{n}, "
            f"arrayCount(x -> bitAnd(x, 3) = 2, {arr}) AS r{n}, "
            f"(o{n} + v{n} + r{n} > 0 AND (o{n} = 0 OR o{n} >= k) AND (v{n} = 0 OR v{n} >= k) "
            f"AND (r{n} = 0 OR r{n} >= k)) AS p{n}")


def fold_sql(source: str, group: Sequence[str], carry: Sequence[str]) -> str:
    """The published rows of the fold of ``source`` per ``group`` (e.g. the window), and a
    marker row per group. ``source`` has the ``group`` and ``carry`` columns (``carry``:
    equal within a group, e.g. the window's end), the dimensions, the measures, ``shops``
    (contributor tags), ``version`` and ``k``. Out: ``group``, ``carry``, the folded key
    (the dimensions, '' where folded), ``fold_level`` (0: a cell as it is, 1-3: folded
    into that parent, 4: the marker, no numbers), the sums, k and the version: the sum of
    the versions of the group's rows.

    Level by level as ``streams.core.kanon.fold``: a row that does not pass is merged with
    the others below its parent, whose contributors are the union of theirs; what does
    not pass at the market level is withheld. Each level is a window function over the
    group (no row leaves ClickHouse). The SQL is shaped for its analysis, which is most of
    the cost of a 5-minute window: named columns instead of ``*``, few nested levels, the
    folded key computed in the aggregation that sums it."""
    g = ", ".join(group)
    cols = ", ".join([*group, *carry, *DIMS, *SUMS, "shops", "version", "k"])
    q = (f"SELECT {cols}, {_passes(0, 'shops')}, "  # noqa: S608
         f"groupUniqArrayArrayIf(shops, NOT p0) OVER (PARTITION BY {g}, category, color, "
         f"size, price_band) AS u1 FROM ({source})")
    cols += ", p0"
    q = (f"SELECT {cols}, {_passes(1, 'u1')}, "  # noqa: S608
         "groupUniqArrayArrayIf(shops, NOT p0 AND NOT p1) OVER (PARTITION BY "
         f"{g}, category) AS u2 FROM ({q})")
    cols += ", p1"
    q = (f"SELECT {cols}, {_passes(2, 'u2')}, "  # noqa: S608
         f"groupUniqArrayArrayIf(shops, NOT p0 AND NOT p1 AND NOT p2) OVER (PARTITION BY {g}) "
         f"AS u3, sum(version) OVER (PARTITION BY {g}) AS wv FROM ({q})")
    # the level of each row, and each row twice: as itself (m = 0) and for the marker
    kept = ", ".join([*group, *carry, *DIMS, *SUMS, "k", "wv"])
    q = (f"SELECT {kept}, multiIf(p0, 0, p1, 1, p2, 2, 4) AS below, {_passes(3, 'u3')}, "  # noqa: S608
         f"if(below < 4, below, if(p3, 3, 4)) AS level, arrayJoin([0, 1]) AS m FROM ({q})")
    firsts = "".join(f"any({c}) AS o_{c}, " for c in carry)
    keys = ("if(m OR level > 2, '', category) AS o_category, "
            "if(m OR level > 1, '', color) AS o_color, if(m OR level > 1, '', size) AS o_size, "
            "if(m OR level > 1, '', price_band) AS o_price_band, "
            "if(m OR level > 0, '', region) AS o_region")
    sums = ", ".join(f"sumIf({s}, NOT m) AS o_{s}" for s in SUMS)
    return (
        f"SELECT {g}, {firsts}{keys}, if(m, {MARKER_LEVEL}, level) AS o_level, {sums}, "  # noqa: S608
        f"any(k) AS o_k, any(wv) AS o_version FROM ({q}) WHERE m OR level < 4 "
        f"GROUP BY {g}, o_category, o_color, o_size, o_price_band, o_region, o_level"
    )


def _cells_source(db: str, where: str) -> str:
    return (
        f"SELECT window_seconds, window_start, window_end, {', '.join(DIMS)}, {', '.join(SUMS)}, "  # noqa: S608
        f"shops, version, {_k(db)} AS k FROM {db}.demand_cells FINAL WHERE {where}"
    )


def refresh_market_sql(db: str) -> str:
    """INSERT of the folded rows and a marker of every window in the bound parameter ``w``
    (``Array(Tuple(UInt32, DateTime))``: size and start), from ``demand_cells``."""
    source = _cells_source(
        db, "(window_seconds, window_start) IN {w:Array(Tuple(UInt32, DateTime))}")
    return (f"INSERT INTO {db}.market_cells ({', '.join(MARKET_COLUMNS)})"
            + fold_sql(source, _WINDOW, ("window_end",)))


def _dt(v: Any) -> datetime:
    if isinstance(v, datetime):
        return v if v.tzinfo else v.replace(tzinfo=UTC)
    return datetime.fromtimestamp(int(v), UTC)


class PendingWindows:
    """The windows shorter than a day whose cells this process refreshed and whose market
    fold has not been redone yet: ``DemandStore.publish`` adds them, the market refresher
    takes them (``refresh_pending``) every interval. Thread-safe (the store publishes on
    the flush thread, the refresher works on its own)."""

    __slots__ = ("_lock", "_windows")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._windows: set[tuple[int, datetime]] = set()

    def add(self, windows: Iterable[tuple[int, Any]]) -> None:
        short = {(int(s), _dt(t)) for s, t in windows if int(s) < DAILY_SECONDS}
        with self._lock:
            self._windows |= short

    def take(self) -> list[tuple[int, datetime]]:
        with self._lock:
            out, self._windows = sorted(self._windows), set()
        return out

    def __len__(self) -> int:
        return len(self._windows)


def refresh_pending(client: Any, db: str, pending: PendingWindows) -> int:
    """Re-fold the pending windows, ``SHORT_BATCH`` a statement; what a failure left
    undone goes back to ``pending``. Returns how many."""
    windows = pending.take()
    for i in range(0, len(windows), SHORT_BATCH):
        try:
            refresh_market(client, db, windows[i:i + SHORT_BATCH])
        except Exception:
            pending.add(windows[i:])
            raise
    return len(windows)


def refresh_market(
    client: Any, db: str, windows: Iterable[tuple[int, Any]], *, daily: bool = False,
    settings: dict[str, Any] | None = None,
) -> int:
    """Re-fold the market rows of ``windows`` ((size, start as a datetime or epoch
    seconds), e.g. those a flush touched): called right after the flush's ``demand_cells``
    refresh. Windows of a day or longer are left to the periodic refresh unless ``daily``.
    Returns how many windows were re-folded."""
    want = sorted({(int(s), _dt(t)) for s, t in windows if daily or int(s) < DAILY_SECONDS})
    if not want:
        return 0
    client.command(refresh_market_sql(db), parameters={"w": want}, settings=settings)
    return len(want)


def stale_windows_sql(db: str) -> str:
    """(size, start) of the windows of the sizes ``s`` (``Array(UInt32)``) starting at most
    ``back`` seconds before the newest window of their size whose newest market marker
    (for the current k) is missing or older than their cells."""
    return f"""
SELECT d.window_seconds, d.window_start
FROM
(
    SELECT window_seconds, window_start, sum(version) AS v
    FROM {db}.demand_cells FINAL
    WHERE window_seconds IN {{s:Array(UInt32)}}
      AND window_start >= (SELECT max(window_start) FROM {db}.demand_cells
                           WHERE window_seconds IN {{s:Array(UInt32)}}) - {{back:UInt32}}
    GROUP BY window_seconds, window_start
) AS d
LEFT JOIN
(
    SELECT window_seconds, window_start, max(version) AS v
    FROM {db}.market_cells
    WHERE window_seconds IN {{s:Array(UInt32)}} AND fold_level = {MARKER_LEVEL}
      AND k = {_k(db)}
    GROUP BY window_seconds, window_start
) AS m USING (window_seconds, window_start)
WHERE m.v IS NULL OR m.v != d.v
ORDER BY d.window_seconds, d.window_start
SETTINGS join_use_nulls = 1
"""  # noqa: S608 - identifiers and constant SQL only


def refresh_stale(
    client: Any, db: str, sizes: Sequence[int] = (DAILY_SECONDS,),
    back_s: int = STALE_LOOKBACK_S,
) -> int:
    """Re-fold the windows of ``sizes`` whose market rows are older than their cells (one
    statement per daily window: a day is the largest fold; shorter windows
    ``SHORT_BATCH`` at a time). Returns how many."""
    stale = client.query(stale_windows_sql(db), parameters={
        "s": list(sizes), "back": back_s}).result_rows
    short = [(int(size), start) for size, start in stale if int(size) < DAILY_SECONDS]
    for i in range(0, len(short), SHORT_BATCH):
        refresh_market(client, db, short[i:i + SHORT_BATCH])
    for size, start in stale:
        if int(size) >= DAILY_SECONDS:
            refresh_market(client, db, [(size, start)], daily=True)
    return len(stale)


# ---------------------------------------------------------------- rolling horizons
def _rolling_source(db: str) -> str:
    """demand_rolling's rows (migration 0010) with the sum of their cells' versions."""
    return f"""
WITH
    toDateTime(intDiv(ifNull((SELECT newest_ts FROM {db}.event_time_progress), 0), 1000))
        AS newest,
    (SELECT window_end FROM {db}.demand_cells
     WHERE window_seconds = 300 AND window_start <= newest
     ORDER BY window_seconds DESC, window_start DESC LIMIT 1) AS as_of_5m,
    (SELECT window_end FROM {db}.demand_cells
     WHERE window_seconds = 3600 AND window_start <= newest
     ORDER BY window_seconds DESC, window_start DESC LIMIT 1) AS as_of_1h,
    as_of_1h - INTERVAL 168 HOUR AS lo_7d,
    if(toStartOfDay(lo_7d) = lo_7d, lo_7d, toStartOfDay(lo_7d) + INTERVAL 1 DAY) AS day_0,
    toStartOfDay(as_of_1h) AS day_1
SELECT
    horizon, as_of, category, color, size, price_band, region,
    sum(o) AS orders, sum(u) AS units, sum(g) AS gmv_e4, sum(cu) AS cancelled_units,
    sum(ru) AS returned_units, sum(pv) AS pageviews,
    arraySort(groupUniqArrayArray(sh)) AS shops, sum(ver) AS version, {_k(db)} AS k
FROM
(
    SELECT '1h' AS horizon, as_of_5m AS as_of, category, color, size, price_band, region,
           orders AS o, units AS u, gmv_e4 AS g, cancelled_units AS cu, returned_units AS ru,
           pageviews AS pv, shops AS sh, version AS ver
    FROM {db}.demand_cells FINAL
    WHERE window_seconds = 300 AND window_start >= as_of_5m - INTERVAL 1 HOUR
      AND window_start < as_of_5m
    UNION ALL
    SELECT '24h', as_of_1h, category, color, size, price_band, region,
           orders, units, gmv_e4, cancelled_units, returned_units, pageviews, shops, version
    FROM {db}.demand_cells FINAL
    WHERE window_seconds = 3600 AND window_start >= as_of_1h - INTERVAL 24 HOUR
      AND window_start < as_of_1h
    UNION ALL
    SELECT '7d', as_of_1h, category, color, size, price_band, region,
           orders, units, gmv_e4, cancelled_units, returned_units, pageviews, shops, version
    FROM {db}.demand_cells FINAL
    WHERE window_seconds = 86400 AND window_start >= day_0 AND window_start < day_1
    UNION ALL
    SELECT '7d', as_of_1h, category, color, size, price_band, region,
           orders, units, gmv_e4, cancelled_units, returned_units, pageviews, shops, version
    FROM {db}.demand_cells FINAL
    WHERE window_seconds = 3600 AND ((window_start >= lo_7d AND window_start < day_0)
                                     OR (window_start >= day_1 AND window_start < as_of_1h))
)
GROUP BY horizon, as_of, category, color, size, price_band, region
"""  # noqa: S608 - identifiers and constant SQL only


def refresh_rolling_sql(db: str) -> str:
    """INSERT of the fold of every rolling horizon as of the newest event time, with a
    marker per horizon."""
    return (f"INSERT INTO {db}.market_rolling_cells ({', '.join(ROLLING_COLUMNS)})"
            + fold_sql(_rolling_source(db), ("horizon",), ("as_of",)))


def prune_rolling(client: Any, db: str) -> None:
    """Drop the rolling folds of days before the newest one's previous day (a partition a
    day): only the newest as_of of each horizon is read."""
    parts = client.query(
        "SELECT DISTINCT partition FROM system.parts WHERE database = {d:String} "
        "AND table = 'market_rolling_cells' AND active ORDER BY partition",
        parameters={"d": db}).result_rows
    days = [str(r[0]) for r in parts]
    for day in days[:-2]:
        if day.isdigit():  # a YYYYMMDD partition id, nothing else is ever in this text
            client.command(f"ALTER TABLE {db}.market_rolling_cells DROP PARTITION ID '{day}'")


def checkpoint_mark(client: Any, db: str) -> tuple[int, int]:
    """What moves with every flush: (checkpoints held, sum of their positions)."""
    row = client.query(
        f"SELECT count(), sum(position) FROM {db}.checkpoints_latest FINAL"  # noqa: S608
    ).result_rows[0]
    return int(row[0]), int(row[1] or 0)


def refresh_periodic(
    client: Any, db: str, short_sizes: Sequence[int] = SHORT_SIZES
) -> None:
    """The whole stored fold brought up to date: the stale windows of ``short_sizes``
    (the window sizes shorter than a day), the stale daily windows, then the rolling
    horizons (which read the windows' cells, not their folds), then the old rolling days
    dropped."""
    if short_sizes:
        refresh_stale(client, db, short_sizes, SHORT_LOOKBACK_S)
    refresh_stale(client, db)
    client.command(refresh_rolling_sql(db))
    prune_rolling(client, db)


# ---------------------------------------------------------------- rebuild and k
def rebuild(client: Any, db: str, month: int | None = None, *, rolling: bool = True) -> int:
    """Re-fold every window held (or those of one month, YYYYMM of the start in UTC) and
    the rolling horizons: the upgrade of a database (migration 0011), a changed k, a
    partition reset, ``serving.rebuild``. A few windows per statement (bounded memory).
    Returns how many windows."""
    where = "" if month is None else " WHERE toYYYYMM(window_start, 'UTC') = {m:UInt32}"
    counts = client.query(
        f"SELECT window_seconds, window_start, count() FROM {db}.demand_cells{where} "  # noqa: S608
        "GROUP BY window_seconds, window_start ORDER BY window_seconds, window_start",
        parameters={} if month is None else {"m": month}).result_rows
    chunk: list[tuple[int, Any]] = []
    cells = 0
    for size, start, n in counts:
        if chunk and cells + int(n) > REBUILD_CELLS:
            refresh_market(client, db, chunk, daily=True)
            chunk, cells = [], 0
        chunk.append((int(size), start))
        cells += int(n)
    if chunk:
        refresh_market(client, db, chunk, daily=True)
    if rolling:
        client.command(refresh_rolling_sql(db))
    return len(counts)


def folded_k(client: Any, db: str) -> int | None:
    """The k the stored market rows were last rebuilt for (``database_info``)."""
    rows = client.query(
        f"SELECT argMax(value, updated_at), count() FROM {db}.database_info "  # noqa: S608
        "WHERE name = 'market_min_shops'").result_rows
    return int(rows[0][0]) if rows and rows[0][1] else None


def current_k(client: Any, db: str) -> int:
    return int(client.query(f"SELECT {_k(db)}").result_rows[0][0])


def ensure_k(client: Any, db: str) -> bool:
    """Rebuild the stored market rows when k (``pipeline_settings`` ``min_shops``) is not
    the one they were folded for (a process starts with another C2M_MIN_SHOPS_PER_SIGNAL);
    recorded once done, so an interrupted rebuild runs again. True when it rebuilt."""
    k = current_k(client, db)
    if folded_k(client, db) == k:
        return False
    log.info("market rows: folding every window for k = %d", k)
    rebuild(client, db)
    for table in ("market_cells", "market_rolling_cells"):
        client.command(f"DELETE FROM {db}.{table} WHERE k != {{k:UInt32}}",  # noqa: S608
                       parameters={"k": k})
    client.insert(f"{db}.database_info", [["market_min_shops", str(k)]],
                  column_names=["name", "value"])
    return True
