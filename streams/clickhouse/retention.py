"""Retention: how long ClickHouse keeps demand windows, visitor rows, SKU hours and late
events.

Without it ``demand_state``, ``visitor_cells`` (about one row per page view),
``sku_state`` and ``late_events`` grow for ever. Retention is a ClickHouse TTL on the
event-time column of each state table (``window_start`` / ``hour_start``), one rule per
window size (``C2M_RETENTION_DAYS``, e.g. 5-minute windows 35 days, hourly 400, daily
kept) and one for the SKU hours (``C2M_RETENTION_SKU_DAYS``); late events go 30 days
after they were recorded (``C2M_RETENTION_LATE_DAYS``). ClickHouse deletes expired rows in
its merges. (Checkpoints cannot be a TTL, since the latest of every partition must stay:
``DemandStore.prune_checkpoints``.)

``apply_retention`` runs after the migrations, at every worker/writer start and in
``c2m db migrate``. It compares the wanted TTL with the table's current one
(``system.tables.engine_full``) and alters a table only when they differ, since changing
a TTL makes ClickHouse recompute it for every existing part. Settings validation
(``streams.settings``) keeps every rule longer than what a restore and the alert rules
read back; ``docs/ARCHITECTURE.md`` ("Retention") has the numbers.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from streams.errors import MigrationError

if TYPE_CHECKING:
    from streams.settings import Settings

log = logging.getLogger(__name__)

_TTL = re.compile(r"\sTTL\s(.*?)(?:\sSETTINGS\s|$)", re.S)


def _expire(time_expr: str, days: int, where: str = "") -> str:
    return f"{time_expr} + toIntervalDay({int(days)}){where}"


def wanted_ttls(
    window_days: Mapping[int, int], sku_days: int, late_days: int, visitor_days: int = 0
) -> dict[str, str]:
    """Table -> its TTL expression, in ClickHouse's own formatting (so it compares equal to
    what ``system.tables`` shows once applied); '' for none. Days of 0 keep the rows.

    - ``demand_state`` and the serving ``demand_cells`` and ``market_cells``: one rule per
      window size, on the window start;
    - ``visitor_cells`` and ``shop_cells``: one rule for every size (only refreshes of
      windows that can still change read them: unique visitors and contributors per cell
      stay in ``demand_cells``);
    - ``sku_state`` and the serving ``sku_hours``: on the hour start; ``sku_days`` on the
      day start (the same days);
    - ``late_events``: on the time the event was recorded (its payload is kept as long as
      the dead-letter topic keeps dead letters), not its event time.
    """
    windows = ", ".join(
        _expire("window_start", days, f" WHERE window_seconds = {int(size)}")
        for size, days in sorted(window_days.items())
        if days > 0
    )
    sku = _expire("hour_start", sku_days) if sku_days > 0 else ""
    return {
        "demand_state": windows,
        "demand_cells": windows,
        "market_cells": windows,
        "visitor_cells": _expire("window_start", visitor_days) if visitor_days > 0 else "",
        # contributors are read, like visitors, only by refreshes of windows that can
        # still change: the cells keep theirs in demand_cells.shops
        "shop_cells": _expire("window_start", visitor_days) if visitor_days > 0 else "",
        "sku_state": sku,
        "sku_hours": sku,
        "sku_days": _expire("day_start", sku_days) if sku_days > 0 else "",
        "lost_sales": sku,
        "late_events": _expire("toDateTime(recorded_at)", late_days) if late_days > 0 else "",
    }


def settings_ttls(settings: Settings) -> dict[str, str]:
    """``wanted_ttls`` of the ``C2M_RETENTION_*`` settings (what ``apply_retention`` sets at
    every start of a process that writes ClickHouse, and in ``c2m db migrate``)."""
    return wanted_ttls(settings.retention_days, settings.retention_sku_days,
                       settings.retention_late_days, settings.retention_visitor_days)


def current_ttl(client: Any, database: str, table: str) -> str:
    """The table's TTL expression as ClickHouse shows it ('' for none)."""
    rows = client.query(
        "SELECT engine_full FROM system.tables WHERE database = {d:String} AND name = {t:String}",
        parameters={"d": database, "t": table},
    ).result_rows
    if not rows:
        raise MigrationError(f"table {database}.{table} not found (migrate first)")
    m = _TTL.search(str(rows[0][0]))
    return m.group(1).strip() if m else ""


def apply_retention(client: Any, database: str, ttls: Mapping[str, str]) -> list[str]:
    """Set the retention TTLs (``wanted_ttls``); returns the tables altered (none when
    they are already in place)."""
    altered = []
    for table, want in ttls.items():
        if current_ttl(client, database, table) == want:
            continue
        # identifiers and validated integers only: no event value is ever in this text
        stmt = (
            f"ALTER TABLE {database}.{table} MODIFY TTL {want}" if want
            else f"ALTER TABLE {database}.{table} REMOVE TTL"
        )
        try:
            client.command(stmt)
        except Exception as exc:
            raise MigrationError(
                f"setting the retention of {database}.{table} failed: {exc}"
            ) from exc
        log.info("retention of %s.%s: %s", database, table, want or "kept for ever")
        altered.append(table)
    return altered
