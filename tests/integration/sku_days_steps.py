"""Five days of simulated shops in a fresh chDB engine (market zone Asia/Shanghai, local days,
or another zone and start), the SKU days folded, corrected, reset, voided by a longer
correction horizon, cut short after the void and raced by another fold, and at every step
the brief and the forecast's daily demand read both ways: run as a subprocess (chDB allows
one engine path per process).

    python -m tests.integration.sku_days_steps ENGINE_DIR [ZONE START_MS]

Prints one JSON object: per step, the rows of ``production_brief`` for the market and for
one factory over several day counts, the rows of 0013's view body (the SKU hours alone) for
the same, ``AlertStore.daily_demand`` and the same from the SKU hours alone, the cut
``sku_days_cut`` gives and what ``sku_days.refresh`` returned."""

from __future__ import annotations

import json
import sys
from collections import Counter
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import orjson

from bench.records import Keyed
from streams.clickhouse import sku_days
from streams.clickhouse.alerts import AlertStore
from streams.clickhouse.client import connect
from streams.clickhouse.migrations import migrate
from streams.clickhouse.store import DemandStore
from streams.core.catalog import Catalog
from streams.core.engine import DemandEngine, LateEvent, Record
from streams.core.pricebands import PriceBands
from streams.settings import Settings
from streams.sim.model import ShopSimulator, generate_history
from tests.helpers.engine import process
from tests.helpers.grafana import ROOT

START_MS = 1_794_398_400_000  # 2026-11-11 12:00 UTC, 20:00 in Shanghai
HOURS = 5 * 24
SEED = 11
PARTITIONS = 4
TZ = "Asia/Shanghai"
HORIZON_MS = 48 * 3_600_000
DAY_COUNTS = (2, 3, 5, 14)
#: the partition that appears after the first fold, with an order for a settled day
NEW_PARTITION = 9


#: 0013's first day of the brief, and 0014's (the local midnight days - 1 dates back)
FIRST_DAY_0013 = "toStartOfDay(newest_hour - 1) - toIntervalDay({days:UInt32} - 1) AS first_day"
FIRST_DAY = ("toStartOfDay(toDateTime(toDate(newest_hour - 1) - ({days:UInt32} - 1), '{tz}'))"
             " AS first_day")


def _view_0013(days: int, factory: str, tz: str) -> str:
    """0013's view body (every day from the SKU hours) as a plain query, with 0014's
    first day (0013's is an hour off across a daylight-saving change)."""
    text = (ROOT / "deploy/clickhouse/0013_brief_sum_then_join.sql").read_text("utf-8")
    body = text[text.index("CREATE OR REPLACE VIEW"):].split(" AS\n", 1)[1].rstrip().rstrip(";")
    assert FIRST_DAY_0013 in body
    body = body.replace(FIRST_DAY_0013, FIRST_DAY)
    return (body.replace("{db}", "c2m").replace("{tz}", tz)
            .replace("{days:UInt32}", str(days)).replace("{run_days:UInt32}", "30")
            .replace("{factory:String}", f"'{factory}'"))


def _daily_from_hours(client: Any, lo: date, hi: date, tz: str) -> list[list[Any]]:
    """The forecast's daily demand before migration 0014: every SKU hour joined."""
    rows = client.query(
        "SELECT factory_id, category, color, size, price_band, d, sum(x) FROM ("
        "SELECT p.factory_id AS factory_id, p.category AS category, p.color AS color, "
        "p.size AS size, p.price_band AS price_band, toDate(h.hour_start, {tz:String}) AS d, "
        "toFloat64(toInt64(h.units) - toInt64(h.cancelled_units) "
        "- toInt64(h.returned_units)) AS x "
        "FROM c2m.sku_hours AS h FINAL "
        "INNER JOIN c2m.products_current AS p ON h.sku = p.sku "
        "WHERE h.hour_start >= toDateTime({lo:Date}, {tz:String}) "
        "AND h.hour_start < toDateTime({hi:Date}, {tz:String}) "
        "UNION ALL "
        "SELECT factory_id, category, color, size, price_band, "
        "toDate(hour_start, {tz:String}), lost_units "
        "FROM c2m.lost_sales FINAL "
        "WHERE hour_start >= toDateTime({lo:Date}, {tz:String}) "
        "AND hour_start < toDateTime({hi:Date}, {tz:String})"
        ") GROUP BY factory_id, category, color, size, price_band, d ORDER BY ALL",
        parameters={"lo": lo, "hi": hi, "tz": tz},
    ).result_rows
    return [[str(f), str(c), str(co), str(sz), str(b), d.toordinal(), float(x)]
            for f, c, co, sz, b, d, x in rows]


class Steps:
    def __init__(self, engine_dir: Path, tz: str, start_ms: int) -> None:
        self.tz, self.start_ms = tz, start_ms
        settings = Settings(data_dir=engine_dir, timezone=tz)
        self.calendar = settings.calendar()
        self.client = connect(settings)
        migrate(self.client, "c2m", timezone=tz)
        self.store = DemandStore(self.client, "c2m", self.calendar)
        self.store.record_settings(settings.view_settings())
        self.alerts = AlertStore(self.client, "c2m")
        self.engine = DemandEngine(
            settings.engine_config(), Catalog(PriceBands(settings.price_band_edges)))
        skus = Counter(e.value["factory_id"] for e in ShopSimulator(SEED, start_ms).catalog())
        self.factory = max(sorted(skus), key=lambda f: skus[f])
        self.out: dict[str, Any] = {"factory": self.factory}
        #: (SKU, local day) of the correction, once written
        self.order: tuple[str, int] | None = None

    def write(self, records: list[Record]) -> None:
        late: list[LateEvent] = []
        for i in range(0, len(records), 5000):
            outcome = process(self.engine, records[i : i + 5000])
            late.extend(outcome.late)
            batch = self.engine.flush_batch()
            self.store.write(batch, late, self.engine.config.allowed_lateness_ms)
            self.engine.flushed(batch)
            late = []

    def history(self) -> list[Record]:
        record = Keyed(PARTITIONS)
        demand = []
        for ev in generate_history(SEED, self.start_ms, HOURS, orders_per_hour=30):
            rec = record(ev.topic, ev.key, ev.value, ev.ts_ms)
            if ev.topic == "shop.products":
                assert self.engine.apply_product(rec) is None
            else:
                demand.append(rec)
        self.write(demand)
        return demand

    def read(self, step: str, refreshed: int | None = None) -> None:
        q = self.client.query
        valid, cut = q("SELECT valid, toUnixTimestamp(cut) FROM c2m.sku_days_cut").result_rows[0]
        got: dict[str, Any] = {"valid": int(valid), "cut": int(cut), "refreshed": refreshed,
                               "sku_days": q("SELECT count() FROM c2m.sku_days FINAL")
                               .result_rows[0][0]}
        for days in DAY_COUNTS:
            for f in ("", self.factory):
                got[f"brief {days} {f}"] = [list(r) for r in q(
                    "SELECT * FROM c2m.production_brief(days={d:UInt32}, run_days=30, "
                    "factory={f:String})", parameters={"d": days, "f": f}).result_rows]
                got[f"hours {days} {f}"] = [
                    list(r) for r in q(_view_0013(days, f, self.tz)).result_rows]
        if self.order is not None:  # the corrected SKU day, folded and from the hours
            sku, day = self.order
            got["order day"] = q(
                "SELECT (SELECT sum(units) FROM c2m.sku_days FINAL WHERE sku = {s:String} "
                "AND day_start = toDateTime({d:Int64})), (SELECT sum(units) FROM "
                "c2m.sku_hours FINAL WHERE sku = {s:String} AND toStartOfDay(hour_start) "
                "= toDateTime({d:Int64}))", parameters={"s": sku, "d": day}).result_rows[0]
        lo = self.calendar.local_date(self.start_ms // 1000) - timedelta(days=1)
        hi = lo + timedelta(days=8)
        got["daily"] = sorted([list(r) for r in self.alerts.daily_demand(lo, hi, self.tz)])
        got["daily hours"] = _daily_from_hours(self.client, lo, hi, self.tz)
        self.out[step] = got

    def fold(self, step: str) -> None:
        self.read(step, sku_days.refresh(self.client, "c2m", HORIZON_MS, self.calendar))

    def correction(self, demand: list[Record]) -> Record:
        """An order for a settled day from a partition new since the fold, then an order
        of now, which moves that partition's watermark up to the others'."""
        settled = self.calendar.day(self.start_ms // 1000 + 86_400)[0] + 3 * 3600
        order = next(r for r in demand if r.topic == "shop.orders"
                     and r.timestamp // 1000 >= settled
                     and orjson.loads(r.value)["event_type"] == "order_placed")
        recent = next(r for r in reversed(demand) if r.topic == "shop.orders")
        recs = []
        for i, r in enumerate((order, recent)):
            value = orjson.loads(r.value)
            value["event_id"] = f"{value['event_id']}-new"
            recs.append(Record(r.topic, NEW_PARTITION, i, r.timestamp, r.key,
                               orjson.dumps(value)))
        self.write(recs)
        self.order = (orjson.loads(order.value)["lines"][0]["sku"],
                      self.calendar.day(order.timestamp // 1000)[0])
        return order


class _Interrupted(Exception):
    pass


class _Hooked:
    """The client, with a hook run before the SKU days' fold statements."""

    def __init__(self, client: Any, hook: Any) -> None:
        self.client, self.hook = client, hook

    def command(self, sql: str, **kw: Any) -> Any:
        if sql.startswith("INSERT INTO c2m.sku_days "):
            self.hook()
        return self.client.command(sql, **kw)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)


def main() -> None:
    tz, start_ms = (sys.argv[2], int(sys.argv[3])) if len(sys.argv) > 3 else (TZ, START_MS)
    steps = Steps(Path(sys.argv[1]), tz, start_ms)
    demand = steps.history()
    steps.read("before any fold")
    # a fold cut short after its first day, before it recorded its bound (a crash)
    first = steps.calendar.day(start_ms // 1000)
    steps.client.command(sku_days.fold_sql("c2m"), parameters={"lo": first[0], "hi": first[1]})
    steps.read("a fold cut short")
    steps.fold("folded")
    steps.fold("folded again")
    order = steps.correction(demand)
    steps.out["order"] = {"qty": orjson.loads(order.value)["lines"][0]["qty"]}
    steps.read("a new partition corrected a settled day")
    steps.fold("folded after the correction")
    steps.store.reset_partition(order.topic, NEW_PARTITION)
    steps.read("the new partition reset")
    steps.fold("folded after the reset")
    # a worker starts with a longer correction horizon: the fold no longer holds
    steps.store.record_settings({"correction_horizon_ms": HORIZON_MS + 24 * 3_600_000})
    steps.read("a longer horizon recorded")

    def crash() -> None:
        raise _Interrupted

    try:  # voided, then cut short before its first day
        sku_days.refresh(_Hooked(steps.client, crash), "c2m", HORIZON_MS, steps.calendar)
        raise AssertionError("not interrupted")
    except _Interrupted:
        pass
    steps.read("a voided fold cut short")
    # the horizon as before: the fold before the void would hold again, on an empty table
    steps.store.record_settings({"correction_horizon_ms": HORIZON_MS})
    steps.read("the horizon back after the voided fold")
    steps.store.record_settings({"correction_horizon_ms": HORIZON_MS + 24 * 3_600_000})
    steps.fold("folded under the longer horizon")
    # another process voids the fold while this one folds again: this one is dropped
    steps.client.insert("c2m.sku_days_folded", [[0, {"shop.orders/0": 1}, 0]],
                        column_names=["folded_before", "marks", "horizon_ms"])
    steps.read("a fold row that does not hold")

    def other() -> None:
        steps.client.insert("c2m.sku_days_folded", [[0, {}, 0]],
                            column_names=["folded_before", "marks", "horizon_ms"])

    steps.read("another fold meanwhile", sku_days.refresh(
        _Hooked(steps.client, other), "c2m", HORIZON_MS, steps.calendar))
    steps.fold("folded after the other")
    print(json.dumps(steps.out, ensure_ascii=False, default=str))


if __name__ == "__main__":
    main()
