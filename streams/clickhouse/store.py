"""The demand store: reads and writes the demand tables (alerts: ``streams.clickhouse.alerts``).

Write protocol of one flush (the argument for no double counting is in
docs/ARCHITECTURE.md, "Commit after flush: why nothing is lost or double counted"):

1. ``visitor_feed`` and ``shop_feed``: the visitors and the contributing shops per cell of
   the base window sizes, with the windows of every size they count in (each packed into
   one integer, migration 0015), as arrays that materialized views expand into
   ``visitor_cells`` and ``shop_cells`` (keyed: writing a row twice changes nothing).
   First, so that a refresh that sees a flush's cells also sees its visitors and shops;
2. ``demand_state`` rows: absolute per-partition cell values, version = partition position;
   ``sku_state`` rows (per-SKU hourly counters, versioned the same way), ``products``
   (catalog versions), ``dedup_feed`` (event ids first seen since the last flush);
3. ``late_events`` rows (keyed by source coordinates);
4. the serving tables ``demand_cells`` and ``sku_hours``: the final rows of the cells and
   SKU hours of this flush (``streams.clickhouse.serving``); the market fold of what
   changed follows within ``C2M_MARKET_REFRESH_SECONDS`` (``streams.market_refresh``);
5. ``checkpoints``: one row per partition, written last, with the hours whose alert inputs
   step 4 refreshed (``hours``: the alert service reads only those again,
   ``changed_hours``).

Steps 4 and 5 are the *publish*: a caller that is behind (a backlog to work off) may write
several flushes' rows and publish them together (``write(..., publish=False)``, then
``publish``), so the serving rows that every flush would re-read are refreshed once.

Only after all of them succeed does the worker acknowledge the Kafka offsets. Event values
only ever travel as insert data or bound query parameters, never inside SQL text.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from streams.clickhouse import market, serving
from streams.clickhouse.errors import sink_error
from streams.core.calendar import UTC_CALENDAR, MarketCalendar
from streams.core.config import MAX_OFFSET, MAX_PARTITION, EngineConfig
from streams.core.dedup import BUCKET_MS
from streams.core.demand import MEASURES, CellKey
from streams.core.engine import Checkpoint, FlushBatch, LateEvent
from streams.core.inventory import SKU_MEASURES, SkuKey
from streams.errors import ConfigError

STATE_COLUMNS = [
    "source_topic", "source_partition", "window_seconds", "window_start",
    "category", "color", "size", "price_band", "region", *MEASURES, "version",
]
CHECKPOINT_COLUMNS = [
    "source_topic", "source_partition", "position", "max_ts",
    "consumed", "processed", "dead_lettered", "duplicates", "late", "last_ts", "last_fp",
    "watermark",
]
#: as written: with the hours the publish refreshed, known (migration 0012)
CHECKPOINT_WRITE_COLUMNS = [*CHECKPOINT_COLUMNS, "hours", "hours_known"]
VISITOR_COLUMNS = [
    "window_seconds", "window_start", "category", "color", "size", "price_band", "region",
    "visitor_hashes", "windows",
]
SHOP_COLUMNS = [*VISITOR_COLUMNS[:7], "shop_tags", "windows"]
SKU_COLUMNS = ["source_topic", "source_partition", "sku", "hour_start", *SKU_MEASURES, "version"]
PRODUCT_COLUMNS = [
    "sku", "ts", "factory_id", "category", "color", "size", "price_band", "list_price",
    "lead_time_days", "moq", "deleted", "shop_id",
]
DEDUP_COLUMNS = ["source_topic", "source_partition", "hour", "id_hashes", "version"]
LATE_COLUMNS = [
    "source_topic", "source_partition", "source_offset", "event_id", "event_type",
    "ts", "watermark", "lateness_ms", "payload",
]


@dataclass(frozen=True, slots=True)
class PartitionSnapshot:
    """What ``load_partition`` returns: everything needed to restore a source partition."""

    checkpoint: Checkpoint
    cells: list[tuple[CellKey, list[int]]]
    dedup_ids: list[tuple[int, int]]
    sku_hours: list[tuple[SkuKey, list[int]]]


#: Settings of the flush inserts. ``optimize_on_insert`` would collapse rows of equal
#: sorting key within each inserted block of the ReplacingMergeTree tables; no reader
#: needs it (the cells of one partition are unique within a flush, visitor and event-id
#: hashes are counted with uniqExact or loaded into sets, everything else is read by
#: version), and it costs about a quarter of the visitor expansion's CPU.
INSERT_SETTINGS = {"optimize_on_insert": 0}


def feed_columns(rows: Sequence[Sequence[Any]]) -> list[Sequence[Any]]:
    """The columns of feed rows (``visitor_feed``, ``shop_feed``), their windows packed as
    ``size << 32 | start`` (migration 0015: a tuple column cost most of the insert, and
    handing clickhouse-connect columns spares it building them row by row). The engine
    shares one windows list among the rows of a base window, so each list is packed once
    (keyed by identity: the rows keep every list alive during the call)."""
    if any(len(row) != len(VISITOR_COLUMNS) for row in rows):
        raise ValueError("a feed row has 9 columns: the cell's 7, its hashes, its windows")
    columns: list[Sequence[Any]] = list(zip(*rows, strict=True))
    packed: dict[int, list[int]] = {}
    windows = []
    for listed in columns[8]:
        got = packed.get(id(listed))
        if got is None:
            got = packed[id(listed)] = [_pack(size, start) for size, start in listed]
        windows.append(got)
    columns[8] = windows
    return columns


def _pack(size: int, start: int) -> int:
    if not (0 <= size < 1 << 32 and 0 <= start < 1 << 32):
        raise ValueError(f"window ({size}, {start}) does not fit 32 + 32 bits")
    return size << 32 | start


def _check_source(partition: int, offset: int = 0) -> None:
    if not 0 <= partition <= MAX_PARTITION:
        raise ValueError(f"partition {partition} out of range 0..{MAX_PARTITION}")
    if not 0 <= offset <= MAX_OFFSET:
        raise ValueError(f"offset {offset} out of range 0..{MAX_OFFSET}")
#: a restore reads windows whose nominal end (start + size) is this much before what it
#: must keep: a local day can last 25 hours, and restoring a window too many is harmless
RESTORE_SLACK_S = 3 * 3600


def _dt(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


class DemandStore:
    def __init__(
        self, client: Any, database: str, calendar: MarketCalendar = UTC_CALENDAR
    ) -> None:
        self.client = client
        self.db = database
        #: the market's windows (ends of local days for the serving rows)
        self.calendar = calendar
        self._refresh_cells = serving.refresh_cells_sql(database)
        self._refresh_skus = serving.refresh_sku_sql(database)
        #: written since the last publish: what to refresh, the checkpoint rows to write
        self._todo = serving.RefreshSet()
        self._checkpoints: list[list[Any]] = []
        #: windows shorter than a day refreshed since the market refresher last took
        #: them: it re-folds their market rows (``streams.market_refresh``)
        self.market_pending = market.PendingWindows()

    # ---------------------------------------------------------------- writes
    def write(
        self, batch: FlushBatch, late: Sequence[LateEvent] = (), lateness_ms: int = 0,
        *, publish: bool = True,
    ) -> None:
        """Write one flush: its rows (steps 1-3 of the protocol above), then, with
        ``publish``, the serving rows and checkpoints of every flush written since the last
        publish (steps 4 and 5, ``publish``). Without ``publish`` the flush's rows are
        durable but nothing is checkpointed: its offsets must not be committed yet, and a
        restart reads them again from the last checkpoint (docs/ARCHITECTURE.md,
        "Publishing several flushes at once")."""
        # first, so that rows of a write that fails part-way are refreshed too (harmless:
        # they are values of the partition's log at their version, like any row above the
        # last checkpoint)
        self._todo.add(batch.rows, batch.sku_rows)
        if batch.visitor_rows:
            self._insert("visitor_feed", batch.visitor_rows, VISITOR_COLUMNS, feed=True)
        if batch.shop_rows:
            self._insert("shop_feed", batch.shop_rows, SHOP_COLUMNS, feed=True)
        if batch.rows:
            self._insert("demand_state", batch.rows, STATE_COLUMNS)
        if batch.sku_rows:
            self._insert("sku_state", batch.sku_rows, SKU_COLUMNS)
        if batch.product_rows:
            self._insert("products", batch.product_rows, PRODUCT_COLUMNS)
        if batch.dedup_rows:
            self._insert("dedup_feed", batch.dedup_rows, DEDUP_COLUMNS)
        if late:
            self._insert("late_events", [
                [
                    e.record.topic, e.record.partition, e.record.offset, e.event_id,
                    e.event_type, _dt(e.ts_ms), _dt(e.watermark_ms), e.watermark_ms - e.ts_ms,
                    (e.record.value or b"").decode("utf-8", "replace"),
                ]
                for e in late
            ], LATE_COLUMNS)
        self._checkpoints += [
            [
                c.topic, c.partition, c.position, -1 if c.max_ts is None else c.max_ts,
                c.consumed, c.processed, c.dead_lettered, c.duplicates, c.late,
                c.last_ts, c.last_fp, -1 if c.max_ts is None else c.max_ts - lateness_ms,
            ]
            for c in batch.checkpoints
        ]
        if publish:
            self.publish()

    def publish(self) -> None:
        """Bring the serving rows of every cell and SKU hour written since the last publish
        up to date (``streams.clickhouse.serving``), then write those flushes'
        checkpoints. Retried as a whole after a failure (both steps are idempotent)."""
        cells, skus = self._todo.params(self.calendar)
        for table, sql, params in (("demand_cells", self._refresh_cells, cells),
                                   ("sku_hours", self._refresh_skus, skus)):
            if params is None:
                continue
            try:
                self.client.command(sql, parameters=params, settings=INSERT_SETTINGS)
            except Exception as exc:
                raise sink_error(exc, "refresh", f"{self.db}.{table}") from exc
        if cells is not None:
            self.market_pending.add(cells["w"])
        if self._checkpoints:
            # after the refresh: a reader that sees these rows sees what they refreshed
            hours = self._todo.input_hours()
            self._insert("checkpoints", [[*c, hours, 1] for c in self._checkpoints],
                         CHECKPOINT_WRITE_COLUMNS)
            self._checkpoints = []
        # last: a publish retried after a failed checkpoint insert still knows its hours
        self._todo = serving.RefreshSet()

    def _insert(
        self, table: str, rows: Sequence[Any], names: list[str], *, feed: bool = False
    ) -> None:
        """Insert ``rows``; with ``feed``, rows of a flush feed (``feed_columns``)."""
        try:
            self.client.insert(
                f"{self.db}.{table}", feed_columns(rows) if feed else rows, column_names=names,
                column_oriented=feed, settings=INSERT_SETTINGS,
            )
        except Exception as exc:
            raise sink_error(exc, "write", f"{self.db}.{table}") from exc

    def rebuild_serving(self) -> None:
        """Recompute all serving rows from the state tables (``serving.rebuild``)."""
        try:
            serving.rebuild(self.client, self.db, self.calendar.timezone)
        except Exception as exc:
            raise sink_error(exc, "rebuild", f"{self.db}.demand_cells") from exc

    def reset_partition(self, topic: str, partition: int) -> dict[str, int]:
        """Forget everything held from one source partition's log (its state rows, event
        ids, late events and checkpoints) and recompute the serving rows of the months it
        touched, so the partition can be read anew from the start of its (new) log.
        Run with no worker owning the partition. Returns the rows deleted per table."""
        _check_source(partition)
        p = {"t": topic, "p": partition}
        where = "source_topic = {t:String} AND source_partition = {p:UInt16}"
        counted: dict[str, int] = {}
        try:
            # the SKU days folded hours of this partition in: readers go back to the SKU
            # hours alone, and the next fold starts from scratch (streams.clickhouse.sku_days;
            # again at the end: a fold may run meanwhile, on the hours not yet recomputed)
            self._forget_sku_days()
            months = {int(r[0]) for r in self.client.query(
                f"SELECT DISTINCT toYYYYMM(window_start, 'UTC') FROM {self.db}.demand_state "  # noqa: S608
                f"WHERE {where}", parameters=p).result_rows}
            sku_months = {int(r[0]) for r in self.client.query(
                f"SELECT DISTINCT toYYYYMM(hour_start, 'UTC') FROM {self.db}.sku_state "  # noqa: S608
                f"WHERE {where}", parameters=p).result_rows}
            for table in ("demand_state", "sku_state", "dedup_ids", "late_events",
                          "checkpoints", "checkpoints_latest"):
                counted[table] = int(self.client.query(
                    f"SELECT count() FROM {self.db}.{table} WHERE {where}",  # noqa: S608
                    parameters=p).result_rows[0][0])
                if counted[table]:
                    self.client.command(
                        f"DELETE FROM {self.db}.{table} WHERE {where}",  # noqa: S608
                        parameters=p)
            # serving rows summed this partition in: drop and recompute their months
            for month in sorted(months):
                self.client.command(
                    f"DELETE FROM {self.db}.demand_cells "  # noqa: S608
                    "WHERE toYYYYMM(window_start, 'UTC') = {m:UInt32}", parameters={"m": month})
                self.client.command(serving.rebuild_cells_sql(self.db, self.calendar.timezone),
                                    parameters={"m": month})
                # the market folds of those windows, from the recomputed cells (their
                # versions may be lower now: the old folds go first)
                self.client.command(
                    f"DELETE FROM {self.db}.market_cells "  # noqa: S608
                    "WHERE toYYYYMM(window_start, 'UTC') = {m:UInt32}", parameters={"m": month})
                market.rebuild(self.client, self.db, month, rolling=False)
            for month in sorted(sku_months):
                self.client.command(
                    f"DELETE FROM {self.db}.sku_hours "  # noqa: S608
                    "WHERE toYYYYMM(hour_start, 'UTC') = {m:UInt32}", parameters={"m": month})
                self.client.command(serving.rebuild_sku_sql(self.db), parameters={"m": month})
            if months:  # the horizons' folds, from the recomputed cells
                self.client.command(f"TRUNCATE TABLE {self.db}.market_rolling_cells")
                self.client.command(market.refresh_rolling_sql(self.db))
            self._forget_sku_days()
        except Exception as exc:
            raise sink_error(exc, "reset", f"{self.db}.demand_state") from exc
        return counted

    def _forget_sku_days(self) -> None:
        self.client.command(f"TRUNCATE TABLE {self.db}.sku_days_folded")
        self.client.command(f"TRUNCATE TABLE {self.db}.sku_days")

    def skip_to(self, topic: str, partition: int, offset: int) -> int:
        """Move a partition's checkpoint forward to ``offset`` over records that cannot be
        read (an operator's decision): a checkpoint with the same state at ``offset``, the
        skipped records counted as consumed and dead-lettered. Returns the position it
        skipped from. Run with no worker owning the partition."""
        _check_source(partition, offset)
        p = {"t": topic, "p": partition}
        try:
            rows = self.client.query(
                f"SELECT {', '.join(CHECKPOINT_COLUMNS[2:])} FROM {self.db}.checkpoints "  # noqa: S608
                "WHERE source_topic = {t:String} AND source_partition = {p:UInt16} "
                "ORDER BY position DESC LIMIT 1", parameters=p).result_rows
        except Exception as exc:
            raise sink_error(exc, "read", f"{self.db}.checkpoints") from exc
        if not rows:
            raise ConfigError(f"{topic}[{partition}] has no checkpoint: it is read from the "
                              "start of its log, there is nothing to skip from")
        (position, max_ts, consumed, processed, dead, dups, late, _ts, _fp,
         watermark) = rows[0]
        if offset <= position:
            raise ConfigError(f"{topic}[{partition}] is at offset {position}: --to must be "
                              "after it")
        n = offset - position
        self._insert("checkpoints", [[
            topic, partition, offset, max_ts, consumed + n, processed, dead + n, dups, late,
            -1, 0, watermark, [], 1]], CHECKPOINT_WRITE_COLUMNS)  # skipped: nothing changed
        return int(position)

    def partitions(self) -> list[tuple[str, int, int]]:
        """(topic, partition, checkpoint position) of every partition with a checkpoint."""
        try:
            rows = self.client.query(
                f"SELECT source_topic, source_partition, last_position "  # noqa: S608
                f"FROM {self.db}.source_progress ORDER BY ALL").result_rows
        except Exception as exc:
            raise sink_error(exc, "read", f"{self.db}.source_progress") from exc
        return [(str(t), int(p), int(pos)) for t, p, pos in rows]

    # ---------------------------------------------------------------- recovery
    def load_partition(
        self, topic: str, partition: int, at_most: int, cfg: EngineConfig
    ) -> PartitionSnapshot | None:
        """State of a source partition as of its last checkpoint at or before ``at_most``:
        the checkpoint, the cells and SKU hours that can still change, the dedup ids
        still in horizon."""
        params = {"t": topic, "p": partition, "at": at_most}
        try:
            cps = self.client.query(
                f"SELECT {', '.join(CHECKPOINT_COLUMNS[2:-1])} FROM {self.db}.checkpoints "  # noqa: S608
                "WHERE source_topic = {t:String} AND source_partition = {p:UInt16} "
                "AND position <= {at:UInt64} ORDER BY position DESC LIMIT 1",
                parameters=params,
            ).result_rows
            if not cps:
                return None
            pos, max_ts, *ledger = cps[0]
            cp = Checkpoint(topic, partition, pos, None if max_ts < 0 else max_ts, *ledger)
            wm = None if cp.max_ts is None else cp.max_ts - cfg.allowed_lateness_ms
            keep_short = 0 if wm is None else cfg.keep_from_s(300, wm)
            keep_long = 0 if wm is None else cfg.keep_from_s(3600, wm)
            keep_hour = 0 if wm is None else max((wm - cfg.dedup_horizon_ms) // BUCKET_MS, 0)
            measures = ", ".join(f"argMax({m}, version)" for m in MEASURES)
            # a window is kept while its end is after keep_*: by start, for the primary key
            # (the longest window size and RESTORE_SLACK_S before), then by start + size
            # with the slack (a local day can last 25 hours)
            longest = max(cfg.window_seconds)
            rows = self.client.query(
                f"SELECT window_seconds, toUnixTimestamp(window_start), category, color, size, "  # noqa: S608
                f"price_band, region, {measures} FROM {self.db}.demand_state "
                "WHERE ((window_seconds < 3600 AND window_start > toDateTime({ks:Int64})) "
                "OR (window_seconds >= 3600 AND window_start > toDateTime({kl:Int64}))) "
                "AND source_topic = {t:String} AND source_partition = {p:UInt16} "
                "AND version <= {v:UInt64} "
                "AND toUnixTimestamp(window_start) + window_seconds + {slack:Int64} > "
                "if(window_seconds >= 3600, {keep_long:Int64}, {keep_short:Int64}) "
                "GROUP BY window_seconds, window_start, category, color, size, price_band, region",
                parameters={
                    **params, "v": pos, "keep_short": keep_short, "keep_long": keep_long,
                    "slack": RESTORE_SLACK_S,
                    "ks": max(keep_short - 3600 - RESTORE_SLACK_S, 0),
                    "kl": max(keep_long - longest - RESTORE_SLACK_S, 0),
                },
            ).result_rows
            ids = self.client.query(
                f"SELECT hour, id_hash FROM {self.db}.dedup_ids "  # noqa: S608
                "WHERE source_topic = {t:String} AND source_partition = {p:UInt16} "
                "AND version <= {v:UInt64} AND hour >= {h:UInt32}",
                parameters={**params, "v": pos, "h": keep_hour},
            ).result_rows
            sku_measures = ", ".join(f"argMax({m}, version)" for m in SKU_MEASURES)
            sku_rows = self.client.query(
                f"SELECT sku, toUnixTimestamp(hour_start), {sku_measures} "  # noqa: S608
                f"FROM {self.db}.sku_state "
                "WHERE hour_start > toDateTime({ks:Int64}) "
                "AND source_topic = {t:String} AND source_partition = {p:UInt16} "
                "AND version <= {v:UInt64} "
                "GROUP BY sku, hour_start",
                parameters={**params, "v": pos, "ks": max(keep_short - 3600, 0)},
            ).result_rows
        except Exception as exc:
            raise sink_error(exc, "restore read", f"{self.db}.demand_state", topic=topic,
                             partition=partition) from exc
        cells = [((r[0], r[1], *r[2:7]), list(r[7:])) for r in rows]
        skus = [((r[0], int(r[1])), [int(x) for x in r[2:]]) for r in sku_rows]
        return PartitionSnapshot(cp, cells, [(int(h), int(i)) for h, i in ids], skus)

    def prune_checkpoints(self, keep_days: int) -> None:
        """Delete checkpoints older than ``keep_days`` that a newer one of their partition
        has superseded (a flush writes one per partition, ~1M rows a day at 12 partitions
        and 1 s flushes). The latest checkpoint of every partition is always kept: restores
        and every view read only that one."""
        try:
            self.client.command(
                f"DELETE FROM {self.db}.checkpoints "  # noqa: S608 - identifier only
                "WHERE written_at < now64(3) - toIntervalDay({days:UInt32}) "
                "AND (source_topic, source_partition, position) NOT IN ("
                "SELECT source_topic, source_partition, max(position) "
                f"FROM {self.db}.checkpoints GROUP BY source_topic, source_partition)",
                parameters={"days": keep_days},
            )
        except Exception as exc:
            raise sink_error(exc, "delete", f"{self.db}.checkpoints") from exc

    def record_settings(self, values: dict[str, int]) -> None:
        """Settings the SQL views need (e.g. the idle-partition rule)."""
        self._insert("pipeline_settings", [[k, v] for k, v in values.items()],
                     ["name", "value"])

    # ---------------------------------------------------------------- reads for views
    def totals(self, window_seconds: int) -> tuple[int, int]:
        """(cells, units) of demand_by_attribute in the windows of one size (every unit is
        in exactly one window of each size)."""
        sql = (f"SELECT count(), sum(units) FROM {self.db}.demand_by_attribute "  # noqa: S608
               "WHERE window_seconds = {w:UInt32}")
        rows, units = self.client.query(sql, parameters={"w": window_seconds}).result_rows[0]
        return int(rows), int(units or 0)

    def ledger_totals(self) -> dict[str, int]:
        """Ledger summed over the latest checkpoint of every source partition."""
        keys = ("consumed", "processed", "dead_lettered", "duplicates", "late")
        sql = (f"SELECT {', '.join(f'sum({k})' for k in keys)} "  # noqa: S608
               f"FROM {self.db}.source_progress")
        try:
            row = self.client.query(sql).result_rows[0]
        except Exception as exc:
            raise sink_error(exc, "read", f"{self.db}.source_progress") from exc
        return {k: int(v or 0) for k, v in zip(keys, row, strict=True)}

    def top_cells(self, window_seconds: int, limit: int = 10) -> list[tuple[Any, ...]]:
        """Top cells by units in the latest window of the given size."""
        try:
            sql = (
                "SELECT window_start, category, color, size, price_band, region, orders, "  # noqa: S608
                f"units, gmv FROM {self.db}.demand_by_attribute "
                "WHERE window_seconds = {w:UInt32} AND window_start = ("
                f"SELECT window_start FROM {self.db}.demand_cells "
                "WHERE window_seconds = {w:UInt32} ORDER BY window_seconds DESC, "
                "window_start DESC LIMIT 1) ORDER BY units DESC, category, color, "
                "size LIMIT {n:UInt32}"
            )
            params = {"w": window_seconds, "n": limit}
            return list(self.client.query(sql, parameters=params).result_rows)
        except Exception as exc:
            raise sink_error(exc, "read", f"{self.db}.demand_by_attribute") from exc
