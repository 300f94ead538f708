"""The alert store: inputs of the alert rules, alert rows and evaluation progress.

Reads go through parameters only; alert rows are written with the insert API. The
write order for one evaluated hour is ``alert_history`` -> ``alerts`` -> ``alert_progress``,
and the hour's messages are published *before* that (see streams.alerting).
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

from streams.clickhouse.errors import sink_error
from streams.core.alerting.book import Alert
from streams.core.alerting.inputs import DIMENSIONS, AlertInputs, Product, SkuCounts, sku_counts
from streams.core.alerting.progress import PartitionProgress
from streams.core.catalog import UNKNOWN

ALERT_COLUMNS = [
    "alert_id", "version", "kind", "state", "severity", "factory_id", "factories", "category",
    "sku", "dimension", "value", "window_start", "opened_at", "changed_at", "observed",
    "expected", "score", "recommended_qty", "projected_stockout", "details", "message",
]


LOST_COLUMNS = [
    "hour_start", "sku", "factory_id", "category", "color", "size", "price_band",
    "lost_units", "lost_orders", "lost_gmv",
]


FORECAST_COLUMNS = [
    "as_of_day", "factory_id", "category", "dimension", "value", "cum_mean", "cum_sd", "model",
    "growth", "history_days", "promo_days",
]


def _dt(s: int) -> datetime:
    return datetime.fromtimestamp(s, UTC)


def _epoch(value: datetime) -> int:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return int(value.timestamp())


#: the categories that ever had demand (units ordered), most units first: what ``c2m
#: brief`` lists when asked for a category without any. The largest window size holds the
#: fewest rows ({db}: the database identifier)
DEMAND_CATEGORIES_SQL = (
    "SELECT category FROM {db}.demand_cells WHERE window_seconds = "
    "(SELECT max(window_seconds) FROM {db}.demand_cells) "
    "GROUP BY category HAVING sum(units) > 0 ORDER BY sum(units) DESC, category LIMIT 1000"
)


class AlertStore:
    def __init__(self, client: Any, database: str) -> None:
        self.client = client
        self.db = database

    def _rows(self, sql: str, **params: Any) -> list[tuple[Any, ...]]:
        try:
            return list(self.client.query(sql, parameters=params).result_rows)
        except Exception as exc:
            raise sink_error(exc, "read", self.db) from exc

    # ---------------------------------------------------------------- progress
    def partition_progress(self) -> dict[tuple[str, int], PartitionProgress]:
        """Latest checkpoint of every source partition, with its age in seconds."""
        rows = self._rows(
            "SELECT source_topic, source_partition, watermark, max_ts, "  # noqa: S608
            "dateDiff('millisecond', written_at, now64(3)) / 1000 "
            f"FROM {self.db}.checkpoints_latest FINAL"
        )
        return {
            (str(t), int(p)): PartitionProgress(int(wm), int(mx), float(age))
            for t, p, wm, mx, age in rows
        }

    def first_hour(self) -> int | None:
        """The first hour with any data (the first rows of the serving tables' keys)."""
        rows = self._rows(
            f"SELECT toUnixTimestamp(window_start) FROM {self.db}.demand_cells "  # noqa: S608
            "WHERE window_seconds = 3600 ORDER BY window_seconds, window_start LIMIT 1"
        )
        rows2 = self._rows(
            f"SELECT toUnixTimestamp(hour_start) FROM {self.db}.sku_hours "  # noqa: S608
            "ORDER BY hour_start LIMIT 1"
        )
        found = [int(r[0][0]) for r in (rows, rows2) if r]
        return min(found) if found else None

    def last_evaluated(self) -> int | None:
        rows = self._rows(
            f"SELECT max(toUnixTimestamp(hour_start)), count() FROM {self.db}.alert_progress"  # noqa: S608
        )
        return int(rows[0][0]) if rows and rows[0][1] else None

    def checkpoint_positions(self) -> dict[tuple[str, int], tuple[int, int]]:
        """The newest checkpoint of every source partition, as (position, written_at in
        epoch ms): ``changed_hours`` reports what was refreshed after them."""
        return {
            (str(t), int(p)): (int(pos), int(at))
            for t, p, pos, at in self._rows(
                "SELECT source_topic, source_partition, position, "  # noqa: S608
                f"toUnixTimestamp64Milli(written_at) FROM {self.db}.checkpoints_latest FINAL"
            )
        }

    def changed_hours(
        self, seen: dict[tuple[str, int], tuple[int, int]]
    ) -> tuple[dict[tuple[str, int], tuple[int, int]], set[int]] | None:
        """The hours whose alert inputs were refreshed after the checkpoints ``seen``
        (``checkpoint_positions``), and the newest checkpoints now: every checkpoint row
        after them lists the hours its publish refreshed (migration 0012), and is written
        after that refresh. None when that cannot be known: a partition seen then no longer
        has that row (pruned, or reset: a row at the same position written later is
        another), or a row after it was written without its hours (by older code)."""
        if not seen:
            return None
        keys = sorted(seen)
        params: dict[str, Any] = {"keys": keys, "pos": [seen[k][0] for k in keys],
                                  "at": [seen[k][1] for k in keys]}
        parts = []
        for i, (topic, partition) in enumerate(keys):
            params[f"t{i}"], params[f"p{i}"], params[f"v{i}"] = topic, partition, seen[
                (topic, partition)][0]
            parts.append(f"(source_topic = {{t{i}:String}} AND source_partition = "
                         f"{{p{i}:UInt16}} AND position >= {{v{i}:UInt64}})")
        # placeholders and identifiers only: the values travel as parameters; the OR of
        # per-partition ranges reaches the primary key
        rows = self._rows(
            "WITH indexOf({keys:Array(Tuple(String, UInt16))}, "  # noqa: S608
            "             (source_topic, source_partition)) AS i, "
            "     {pos:Array(UInt64)}[i] AS seen_pos, {at:Array(Int64)}[i] AS seen_at "
            "SELECT source_topic, source_partition, "
            "       countIf(position = seen_pos "
            "               AND toUnixTimestamp64Milli(written_at) = seen_at) AS same, "
            "       countIf(position > seen_pos AND hours_known = 0) AS unknown, "
            "       max(position), "
            "       argMax(toUnixTimestamp64Milli(written_at), (position, written_at)), "
            "       groupUniqArrayArrayIf(hours, position > seen_pos) "
            f"FROM {self.db}.checkpoints WHERE {' OR '.join(parts)} "
            "GROUP BY source_topic, source_partition",
            **params,
        )
        found = {(str(t), int(p)): r for t, p, *r in rows}
        if set(found) != set(seen) or any(
                int(same) == 0 or int(unknown) > 0
                for same, unknown, *_ in found.values()):
            return None
        changed = {_epoch(h) for *_, hours in found.values() for h in hours}
        return {k: (int(r[2]), int(r[3])) for k, r in found.items()}, changed

    # ---------------------------------------------------------------- inputs
    def max_lead_time_days(self) -> int:
        rows = self._rows(
            f"SELECT max(lead_time_days), count() FROM {self.db}.products_current"  # noqa: S608
        )
        return int(rows[0][0]) if rows and rows[0][1] else 0

    def load_inputs(
        self, lo_s: int, hi_s: int, movements_from_s: int | None = None,
        also: Sequence[int] = (),
    ) -> AlertInputs:
        """Products, SKU hours and cell orders per key for hours in [lo_s, hi_s) and the
        hours ``also``; and when ``movements_from_s`` is earlier, the hours in
        [movements_from_s, lo_s) that have restock movements (shipped and received only:
        the restock rule's transit window can reach further back than its demand
        history)."""
        extra = [_dt(h) for h in sorted(also)]
        products = {
            r[0]: Product(r[0], r[1], r[2], r[3], r[4], r[5], int(r[6]), int(r[7]), float(r[8]),
                          str(r[9]))
            for r in self._rows(
                "SELECT sku, factory_id, category, color, size, price_band, lead_time_days, "  # noqa: S608
                f"moq, list_price, shop_id FROM {self.db}.products_current"
            )
        }
        sku_hours: dict[str, dict[int, SkuCounts]] = defaultdict(dict)
        for r in self._rows(
            "SELECT sku, toUnixTimestamp(hour_start), units, cancelled_units, "  # noqa: S608
            "restock_shipped, restock_received, count_ts, count_on_hand, orders, pageviews "
            f"FROM {self.db}.sku_hours "
            "FINAL WHERE (hour_start >= toDateTime({lo:Int64}) "
            "AND hour_start < toDateTime({hi:Int64})) "
            "OR hour_start IN {also:Array(DateTime('UTC'))}",
            lo=lo_s, hi=hi_s, also=extra,
        ):
            # the row's integers in SkuHour's order, as the plain tuple SkuCounts (untracked
            # by the collector): a slice, not eight int() calls per SKU hour (a whole load
            # reads 1.35 million of them at 4,000 SKUs, bench/RESULTS.md)
            sku_hours[r[0]][r[1]] = tuple(r[2:])  # (the slice itself: rows are tuples)
        if movements_from_s is not None and movements_from_s < lo_s:
            for sku, h, shipped, received in self._rows(
                "SELECT sku, toUnixTimestamp(hour_start), restock_shipped, "  # noqa: S608
                f"restock_received FROM {self.db}.sku_hours FINAL "
                "WHERE hour_start >= toDateTime({lo:Int64}) "
                "AND hour_start < toDateTime({hi:Int64}) "
                "AND (restock_shipped > 0 OR restock_received > 0)",
                lo=movements_from_s, hi=lo_s,
            ):
                sku_hours[sku][int(h)] = sku_counts(
                    shipped=int(shipped), received=int(received)
                )
        # the hourly cells with orders, summed per (category, dimension, value, hour) in
        # ClickHouse: each cell counts once under each of its three dimensions
        orders: dict[tuple[str, str, str], dict[int, int]] = defaultdict(dict)
        cats: dict[str, dict[int, int]] = defaultdict(lambda: defaultdict(int))
        shops: dict[tuple[str, str, str], dict[int, frozenset[int]]] = defaultdict(dict)
        for cat, dim, value, h, n, tags in self._rows(
            "SELECT category, dv.1 AS dim, dv.2 AS value, h, sum(n), "  # noqa: S608
            "groupUniqArrayArray(tags) FROM ("
            "SELECT category, color, size, price_band, toUnixTimestamp(window_start) AS h, "
            "sum(orders) AS n, "
            "groupUniqArrayArray(arrayFilter(x -> bitAnd(x, 3) = 0, shops)) AS tags "
            f"FROM {self.db}.demand_cells FINAL WHERE window_seconds = 3600 "
            "AND category != {unknown:String} "
            "AND ((window_start >= toDateTime({lo:Int64}) "
            "AND window_start < toDateTime({hi:Int64})) "
            "OR window_start IN {also:Array(DateTime('UTC'))}) "
            "GROUP BY category, color, size, price_band, h HAVING n > 0) "
            "ARRAY JOIN arrayZip({dims:Array(String)}, [color, size, price_band]) AS dv "
            "GROUP BY category, dim, value, h",
            lo=lo_s, hi=hi_s, also=extra, unknown=UNKNOWN, dims=list(DIMENSIONS),
        ):
            key = (cat, dim, value)
            orders[key][h] = n
            shops[key][h] = frozenset(tags)
            if dim == DIMENSIONS[0]:  # every cell has one colour: its orders, once
                cats[cat][h] += n
        return AlertInputs(
            products,
            dict(sku_hours),
            dict(orders),
            {k: dict(v) for k, v in cats.items()},
            dict(shops),
        )

    # ---------------------------------------------------------------- alerts
    def prune_resolved(self, before_s: int) -> int:
        """Delete from ``alerts`` every alert resolved by the evaluation of an hour before
        ``before_s`` (event time), every version of it, and return how many: the current
        table then holds the open alerts and the recently resolved ones, however long the
        history (``alert_history`` keeps every version). A resolved alert never changes
        again (an alert that fires anew is a new episode, with a new id), so deleting all
        its versions at once leaves no older version to show through ``FINAL``. The table
        (the open alerts and the recently resolved ones: a few hundred KB) is then merged
        into one part, so that no reader reads the deleted rows' masks and messages until
        ClickHouse would merge it."""
        where = (f"SELECT alert_id FROM {self.db}.alerts FINAL "  # noqa: S608
                 "WHERE state = 'resolved' AND window_start < toDateTime({before:Int64})")
        (n,), = self._rows(f"SELECT count() FROM ({where})", before=before_s)  # noqa: S608
        if n:
            try:
                self.client.command(
                    f"DELETE FROM {self.db}.alerts WHERE alert_id IN ({where})",  # noqa: S608
                    parameters={"before": before_s})
                self.client.command(f"OPTIMIZE TABLE {self.db}.alerts FINAL")
            except Exception as exc:
                raise sink_error(exc, "delete", f"{self.db}.alerts") from exc
        return int(n)

    def current_alerts(self, resolved_after_s: int | None = None) -> list[Alert]:
        """The newest version of every alert (to rebuild the lifecycle book); with
        ``resolved_after_s``, of the resolved ones only those resolved in an hour after it
        (``AlertBook.restore_bound``: the others cool down no hour still to evaluate). The
        filter applies to the newest versions (after FINAL)."""
        cols = ", ".join(ALERT_COLUMNS[:-1])
        sql = f"SELECT {cols} FROM {self.db}.alerts FINAL"  # noqa: S608
        if resolved_after_s is not None:
            sql = (f"SELECT {cols} FROM ({sql}) WHERE state != 'resolved' "  # noqa: S608
                   "OR window_start > toDateTime({after:Int64})")
        out = []
        for r in self._rows(sql, after=resolved_after_s or 0):
            d = dict(zip(ALERT_COLUMNS, r, strict=False))
            kind = d["kind"]
            key = (d["sku"],) if kind == "restock" else (d["category"], d["dimension"], d["value"])
            stockout = d["projected_stockout"]
            out.append(
                Alert(
                    d["alert_id"], int(d["version"]), kind, d["state"], d["severity"], key,
                    d["factory_id"], tuple(d["factories"]), d["category"], d["sku"],
                    d["dimension"], d["value"], _epoch(d["window_start"]),
                    _epoch(d["opened_at"]), _epoch(d["changed_at"]), float(d["observed"]),
                    float(d["expected"]), float(d["score"]), int(d["recommended_qty"]),
                    None if stockout is None else _epoch(stockout), json.loads(d["details"]),
                )
            )
        return out

    def write(
        self, changes: list[tuple[Alert, str]], hour_s: int,
        lost: Sequence[tuple[Any, ...]] = (),
    ) -> None:
        """Store an evaluated hour: its alert changes (with their messages), the sales its
        stockouts lost (``LOST_COLUMNS``), then progress."""
        try:
            if lost:
                self.client.insert(f"{self.db}.lost_sales", [[_dt(hour_s), *r] for r in lost],
                                   column_names=LOST_COLUMNS)
            if changes:
                rows = [
                    [
                        a.alert_id, a.version, a.kind, a.state, a.severity, a.factory_id,
                        list(a.factories), a.category, a.sku, a.dimension, a.value,
                        _dt(a.window_start), _dt(a.opened_at), _dt(a.changed_at), a.observed,
                        a.expected, a.score, a.recommended_qty,
                        None if a.stockout_s is None else _dt(a.stockout_s),
                        json.dumps(a.details, ensure_ascii=False, sort_keys=True), message,
                    ]
                    for a, message in changes
                ]
                self.client.insert(f"{self.db}.alert_history", rows, column_names=ALERT_COLUMNS)
                self.client.insert(f"{self.db}.alerts", rows, column_names=ALERT_COLUMNS)
            self.client.insert(
                f"{self.db}.alert_progress", [[_dt(hour_s)]], column_names=["hour_start"]
            )
        except Exception as exc:
            raise sink_error(exc, "write", f"{self.db}.alerts") from exc

    # ---------------------------------------------------------------- forecast
    def forecast_as_of(self) -> int | None:
        """The newest local day (date ordinal) the brief's forecast was computed up to."""
        rows = self._rows(
            f"SELECT max(as_of_day), count() FROM {self.db}.brief_forecast"  # noqa: S608
        )
        return rows[0][0].toordinal() if rows and rows[0][1] else None

    def daily_demand(
        self, first_day: date, last_day: date, timezone: str
    ) -> list[tuple[str, str, str, str, str, int, float]]:
        """Demand per (factory, category, colour, size, price band, local day) for the
        local days first_day..last_day: net units (ordered less cancelled and returned)
        plus the units lost to stockouts. Days as ordinals; one row per cell with any.
        The settled days come from the SKU days, the others from the SKU hours (summed per
        SKU and day before the catalog join either way; ``sku_days_cut``)."""
        net = "toInt64(units) - toInt64(cancelled_units) - toInt64(returned_units)"
        rows = self._rows(
            "WITH (SELECT cut FROM " + self.db + ".sku_days_cut) AS cut, "  # noqa: S608
            "toDateTime({lo:Date}, {tz:String}) AS lo, toDateTime({hi:Date}, {tz:String}) AS hi "
            "SELECT factory_id, category, color, size, price_band, d, sum(x) FROM ("
            "SELECT p.factory_id AS factory_id, p.category AS category, p.color AS color, "
            "p.size AS size, p.price_band AS price_band, s.d AS d, toFloat64(s.n) AS x FROM ("
            f"SELECT sku, toDate(hour_start, {{tz:String}}) AS d, sum({net}) AS n "
            f"FROM {self.db}.sku_hours FINAL "
            "WHERE hour_start >= greatest(lo, cut) AND hour_start < hi GROUP BY sku, d "
            f"UNION ALL SELECT sku, toDate(day_start, {{tz:String}}) AS d, {net} AS n "
            f"FROM {self.db}.sku_days FINAL "
            "WHERE day_start >= lo AND day_start < least(cut, hi)"
            f") AS s INNER JOIN {self.db}.products_current AS p ON s.sku = p.sku "
            "UNION ALL "
            "SELECT factory_id, category, color, size, price_band, "
            "toDate(hour_start, {tz:String}), lost_units "
            f"FROM {self.db}.lost_sales FINAL "
            "WHERE hour_start >= toDateTime({lo:Date}, {tz:String}) "
            "AND hour_start < toDateTime({hi:Date}, {tz:String})"
            ") GROUP BY factory_id, category, color, size, price_band, d",
            lo=first_day, hi=last_day + timedelta(days=1), tz=timezone,
        )
        return [(str(f), str(c), str(co), str(sz), str(b), d.toordinal(), float(x))
                for f, c, co, sz, b, d, x in rows]

    def write_forecast(self, rows: Sequence[Sequence[Any]]) -> None:
        """Rows of ``brief_forecast`` (``FORECAST_COLUMNS``)."""
        if not rows:
            return
        try:
            self.client.insert(f"{self.db}.brief_forecast", [list(r) for r in rows],
                               column_names=FORECAST_COLUMNS)
        except Exception as exc:
            raise sink_error(exc, "write", f"{self.db}.brief_forecast") from exc

    def alerts(
        self, factory: str = "", open_only: bool = True, limit: int = 200,
        market: bool = False,
    ) -> list[dict[str, Any]]:
        """Current alerts (newest first) as their published messages: with ``factory``
        that factory's restock alerts and the market signals (which name no factory),
        with ``market`` the market signals only, else every alert."""
        rows = self._rows(
            f"SELECT message FROM {self.db}.alerts FINAL "  # noqa: S608
            "WHERE (kind != 'restock' OR (NOT {m:Bool} AND "
            "({f:String} = '' OR factory_id = {f:String}))) "
            "AND (NOT {o:Bool} OR state != 'resolved') "
            "ORDER BY changed_at DESC, alert_id LIMIT {n:UInt32}",
            f=factory, o=open_only, n=limit, m=market,
        )
        return [json.loads(r[0]) for r in rows]

    def brief(self, category: str, factory: str, days: int, run_days: int) -> list[dict[str, Any]]:
        """Rows of ``c2m.production_brief`` for one category."""
        try:
            res = self.client.query(
                f"SELECT * FROM {self.db}.production_brief("  # noqa: S608
                "days={d:UInt32}, run_days={r:UInt32}, factory={f:String}) "
                "WHERE category = {c:String}",
                parameters={"d": days, "r": run_days, "f": factory, "c": category},
            )
        except Exception as exc:
            raise sink_error(exc, "read", f"{self.db}.production_brief") from exc
        return [dict(zip(res.column_names, r, strict=True)) for r in res.result_rows]

    def demand_categories(self) -> list[str]:
        """The categories that ever had demand, most units first."""
        return [str(r[0]) for r in self._rows(DEMAND_CATEGORIES_SQL.replace("{db}", self.db))]

    def brief_cells(
        self, category: str, factory: str, lo_s: int, hi_s: int
    ) -> list[dict[str, Any]]:
        """Per (colour, size, price band) of the category's SKUs in the catalog: how many
        SKUs, their MOQs and their net units in the hours [lo_s, hi_s) (the brief's)."""
        rows = self._rows(
            "SELECT p.color, p.size, p.price_band, count() AS skus, min(p.moq), max(p.moq), "  # noqa: S608
            "sum(h.net) FROM "
            f"{self.db}.products_current AS p LEFT JOIN (SELECT sku, sum(toInt64(units) - "
            "toInt64(cancelled_units) - toInt64(returned_units)) AS net "
            f"FROM {self.db}.sku_hourly WHERE hour_start >= toDateTime({{lo:Int64}}) "
            "AND hour_start < toDateTime({hi:Int64}) GROUP BY sku) AS h ON h.sku = p.sku "
            "WHERE p.category = {c:String} AND ({f:String} = '' OR p.factory_id = {f:String}) "
            "GROUP BY p.color, p.size, p.price_band",
            lo=lo_s, hi=hi_s, c=category, f=factory,
        )
        keys = ("color", "size", "price_band", "skus", "moq_min", "moq_max", "net_units")
        return [dict(zip(keys, (str(r[0]), str(r[1]), str(r[2]), int(r[3]), int(r[4]),
                                int(r[5]), int(r[6] or 0)), strict=True)) for r in rows]
