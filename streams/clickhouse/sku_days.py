"""SKU days: the SKU hours of settled local days summed per SKU and day (migration 0014),
so that the readers of whole days (the production brief, the forecast's daily demand)
read one row per SKU and day instead of 24, whatever the range they span.

A partition applies an event only if it is at most the correction horizon behind the
partition's watermark; so every hour before the lowest watermark minus the horizon is
settled, and so is every local day that ends by then. ``refresh`` folds the settled days
not yet folded (``INSERT ... SELECT`` from ``sku_hours FINAL``), then records the bound it
folded up to with the watermarks it read (``sku_days_folded``). It runs off the ingest
path: the alert leader's market refresher calls it every tick
(``streams.market_refresh``); a day is folded once, about one tick after it settles.

Readers go through ``sku_days_cut``: the bound while the recorded watermarks still hold,
else the epoch, and then they read ``sku_hours`` alone. The watermarks stop holding when
settled hours may have been rewritten: a partition reset (``DemandStore.reset_partition``
also empties both tables), a partition new since the fold, one gone, or one whose
watermark went back. The next ``refresh`` then folds every day again from scratch.
The bound is a local midnight in the market's zone (the tables' ``DateTime('{tz}')``).
"""

from __future__ import annotations

import logging
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


def settled_before(
    client: Any, db: str, horizon_s: int, calendar: MarketCalendar
) -> tuple[int, dict[str, int]] | None:
    """The local midnight before which every day is settled (epoch seconds) and the
    watermarks it follows from ('topic/partition' -> epoch ms); None while there is no
    checkpoint or a partition has no watermark yet."""
    rows = client.query(
        "SELECT concat(source_topic, '/', toString(source_partition)), watermark "  # noqa: S608
        f"FROM {db}.checkpoints_latest FINAL"
    ).result_rows
    marks = {str(k): int(w) for k, w in rows}
    if not marks or min(marks.values()) < 0:
        return None
    return calendar.day(max(min(marks.values()) // 1000 - horizon_s, 0))[0], marks


def refresh(client: Any, db: str, horizon_s: int, calendar: MarketCalendar) -> int:
    """Fold the settled days not yet folded; returns how many days it folded (0: none
    settled since the last fold). A fold whose watermarks no longer hold, or none, is
    redone from the first SKU hour held. ``calendar``: the market's (the database's zone)."""
    settled = settled_before(client, db, horizon_s, calendar)
    if settled is None:
        return 0
    bound, marks = settled
    valid, cut = client.query(
        f"SELECT valid, toUnixTimestamp(cut) FROM {db}.sku_days_cut"  # noqa: S608
    ).result_rows[0]
    if valid:
        if bound <= int(cut):
            return 0
        day = int(cut)
    else:
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
    client.insert(f"{db}.sku_days_folded", [[_dt(max(bound, start)), marks]],
                  column_names=["folded_before", "marks"])
    log.info("SKU days: %d folded (%s up to %s)", folded,
             calendar.format(start, "%Y-%m-%d"), calendar.format(bound, "%Y-%m-%d"))
    return folded


def _dt(s: int) -> datetime:
    return datetime.fromtimestamp(s, UTC)
