"""SKU days: the SKU hours of settled local days summed per SKU and day (migration 0014),
so that the readers of whole days (the production brief, the forecast's daily demand)
read one row per SKU and day instead of 24, whatever the range they span.

A partition applies an event only if it is at most the correction horizon behind the
partition's watermark; so every hour before the lowest watermark minus the horizon is
settled, and so is every local day that ends by then. ``refresh`` folds the settled days
not yet folded (``INSERT ... SELECT`` from ``sku_hours FINAL``), then records the bound it
folded up to with the watermarks and the horizon it used (``sku_days_folded``). It runs
off the ingest path, in the process that evaluates the alerts, at every market refresher
tick (``streams.market_refresh``); a day is folded once, about one tick after it settles.

Readers go through ``sku_days_cut``: the bound while the recorded watermarks still hold
and no worker recorded a longer horizon (``pipeline_settings``), else the epoch, and then
they read ``sku_hours`` alone. The watermarks stop holding when settled hours may have
been rewritten: a partition reset (``DemandStore.reset_partition`` also empties both
tables), a partition new since the fold, one gone, or one whose watermark went back. The
next ``refresh`` then voids the fold (a row without watermarks), empties ``sku_days`` and
folds every settled day again; it records its bound only if no other fold row was written
meanwhile. docs/ARCHITECTURE.md ("SKU days") has the argument.
The bound is a local midnight in the market's zone (the tables' ``DateTime('{tz}')``).
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from typing import Any

from streams.core.calendar import MarketCalendar

log = logging.getLogger(__name__)

#: the counters the readers of days use (sku_hours has more: restocks, stock counts)
DAY_COUNTERS = ("orders", "units", "cancelled_units", "returned_units", "pageviews")
#: days folded by one statement (bounded memory: a month of SKUs at most)
CHUNK_DAYS = 31


def fold_sql(db: str) -> str:
    """INSERT of the SKU days of the local days in [lo, hi) (parameters ``lo``, ``hi``:
    local midnights, epoch seconds)."""
    sums = ", ".join(f"sum({c})" for c in DAY_COUNTERS)
    return (
        f"INSERT INTO {db}.sku_days (day_start, sku, {', '.join(DAY_COUNTERS)}, version) "  # noqa: S608
        f"SELECT toStartOfDay(hour_start) AS day, sku, {sums}, sum(version) "
        f"FROM {db}.sku_hours FINAL "
        "WHERE hour_start >= toDateTime({lo:Int64}) AND hour_start < toDateTime({hi:Int64}) "
        "GROUP BY day, sku"
    )


def horizon_ms(client: Any, db: str, own_ms: int) -> int:
    """The correction horizon to settle days by: this process's, or the one the workers
    recorded (``pipeline_settings``), whichever is longer."""
    rows = client.query(
        f"SELECT argMax(value, updated_at) FROM {db}.pipeline_settings "  # noqa: S608
        "WHERE name = 'correction_horizon_ms' HAVING count() > 0"
    ).result_rows
    return max(own_ms, int(rows[0][0])) if rows else own_ms


def settled_before(
    client: Any, db: str, horizon: int, calendar: MarketCalendar
) -> tuple[int, dict[str, int]] | None:
    """The local midnight before which every day is settled (epoch seconds) under a
    correction horizon of ``horizon`` ms, and the watermarks it follows from
    ('topic/partition' -> epoch ms); None while there is no checkpoint or a partition
    has no watermark yet."""
    rows = client.query(
        "SELECT concat(source_topic, '/', toString(source_partition)), watermark "  # noqa: S608
        f"FROM {db}.checkpoints_latest FINAL"
    ).result_rows
    marks = {str(k): int(w) for k, w in rows}
    if not marks or min(marks.values()) < 0:
        return None
    return calendar.day(max((min(marks.values()) - horizon) // 1000, 0))[0], marks


def _newest_marker(client: Any, db: str) -> int | None:
    """When the newest fold row was written (epoch ms), None without one."""
    rows = client.query(
        "SELECT toUnixTimestamp64Milli(max(written_at)) "  # noqa: S608
        f"FROM {db}.sku_days_folded HAVING count() > 0"
    ).result_rows
    return int(rows[0][0]) if rows else None


def refresh(client: Any, db: str, horizon: int, calendar: MarketCalendar) -> int:
    """Fold the settled days not yet folded; returns how many days it folded (0: none
    settled since the last fold, or another fold started meanwhile). A fold that no
    longer holds (``sku_days_cut``), or none, is voided and redone from the first SKU
    hour held. ``horizon``: this process's correction horizon (ms); ``calendar``: the
    market's (the database's zone).

    One process folds (the one that evaluates the alerts); should two ever fold at once,
    each writes its bound only if no other fold row was written since it started, so a
    fold that another voided under it is not recorded."""
    horizon = horizon_ms(client, db, horizon)
    settled = settled_before(client, db, horizon, calendar)
    if settled is None:
        return 0
    bound, marks = settled
    seen = _newest_marker(client, db)
    valid, cut = client.query(
        f"SELECT valid, toUnixTimestamp(cut) FROM {db}.sku_days_cut"  # noqa: S608
    ).result_rows[0]
    if valid:
        if bound <= int(cut):
            return 0
        day = int(cut)
    else:
        # void first (readers take the SKU hours alone from here), then start afresh
        seen = time.time_ns() // 1_000_000
        client.insert(f"{db}.sku_days_folded", [[_dt(0), {}, 0, _dt(seen / 1000)]],
                      column_names=["folded_before", "marks", "horizon_ms", "written_at"])
        client.command(f"TRUNCATE TABLE {db}.sku_days")
        first, held = client.query(
            f"SELECT toUnixTimestamp(min(hour_start)), count() FROM {db}.sku_hours"  # noqa: S608
        ).result_rows[0]
        day = calendar.day(int(first))[0] if held else bound
    start, folded, sql = day, 0, fold_sql(db)
    while day < bound:
        end = day
        for _ in range(CHUNK_DAYS):
            end = calendar.day(end)[1]
            folded += 1
            if end >= bound:
                break
        client.command(sql, parameters={"lo": day, "hi": end})
        day = end
    if _newest_marker(client, db) != seen:
        log.warning("SKU days: another fold was written meanwhile; this one is dropped")
        return 0
    client.insert(f"{db}.sku_days_folded", [[_dt(max(bound, start)), marks, horizon]],
                  column_names=["folded_before", "marks", "horizon_ms"])
    log.info("SKU days: %d folded (%s up to %s)", folded,
             calendar.format(start, "%Y-%m-%d"), calendar.format(bound, "%Y-%m-%d"))
    return folded


def _dt(s: float) -> datetime:
    return datetime.fromtimestamp(s, UTC)
