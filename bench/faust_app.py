"""The idiomatic Faust baseline: Records, ``group_by`` the attribute cell, windowed Tables.

The same aggregation as c2m-pulse (page views, orders/units/GMV, cancelled and returned
units per (category, color, size, price band, region) in tumbling 5-minute, 1-hour and
1-day event-time windows), written the way the Faust documentation shows it: one agent per
topic, ``stream.group_by(cell)``, ``table[cell] += n`` on ``Table(...).tumbling(...)``.

Run by ``python -m bench`` as a subprocess; the environment says where the broker, the
catalog (JSON: sku -> [category, color, size, price band]) and the status file are.
Every 0.5 s it writes ``{"count", "first", "last"}`` (events seen by the agents and
monotonic times) to the status file; the parent stops it.
"""

from __future__ import annotations

import json
import os
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import faust

from schemas.types import parse_event_time

BOOTSTRAP = os.environ.get("BENCH_BOOTSTRAP", "127.0.0.1:9092")
_CATALOG_FILE = os.environ.get("BENCH_CATALOG")
CATALOG: dict[str, list[str]] = json.loads(Path(_CATALOG_FILE).read_text()) if _CATALOG_FILE else {}
STATUS = Path(os.environ.get("BENCH_STATUS", "bench-faust-status.json"))
UNKNOWN = ["unknown"] * 4

app = faust.App(
    os.environ.get("BENCH_APP_ID", "bench-faust"),
    broker=f"kafka://{BOOTSTRAP}",
    store="memory://",
    topic_partitions=4,
    broker_rebalance_timeout=3.0,
    broker_session_timeout=6.0,
    consumer_auto_offset_reset="earliest",
    web_enabled=False,
)


class PageView(faust.Record, serializer="json"):
    event_id: str
    ts: Any
    shop_id: str
    event_type: str
    sku: str
    visitor_id: str
    region: str


class OrderLine(faust.Record, serializer="json"):
    sku: str
    qty: int
    unit_price: float


class Order(faust.Record, serializer="json"):
    event_id: str
    ts: Any
    shop_id: str
    event_type: str
    order_id: str
    region: str
    buyer_id: str
    lines: list[OrderLine]


class Logistics(faust.Record, serializer="json"):
    event_id: str
    ts: Any
    shop_id: str
    event_type: str
    sku: str
    qty: int = 0
    region: str = "unknown"


class Keyed(faust.Record, serializer="json"):
    """What is repartitioned by cell: the event time and the measure increments."""

    cell: str
    ts_s: float
    orders: int = 0
    units: int = 0
    gmv_e4: int = 0
    cancelled: int = 0
    returned: int = 0
    pageviews: int = 0
    w: float = 1.0  # this record's share of its event, for counting finished events


def _event_s(event: Any) -> float:
    """Event time of the current event, for the windowed tables."""
    value = event.value
    if isinstance(value, Keyed):
        return value.ts_s
    return parse_event_time(value.ts) / 1000


TABLES = [
    app.Table(f"cells{size}", default=int, partitions=4)
    .tumbling(size, expires=timedelta(days=2))
    .relative_to(_event_s)
    for size in (300, 3600, 86_400)
]
MEASURES = ("orders", "units", "gmv_e4", "cancelled", "returned", "pageviews")

pageviews = app.topic("shop.pageviews", value_type=PageView)
orders = app.topic("shop.orders", value_type=Order)
logistics = app.topic("shop.logistics", value_type=Logistics)
cells = app.topic("bench-faust-cells", value_type=Keyed, partitions=4)

_progress = {"count": 0, "first": 0.0, "last": 0.0}


def _seen(weight: float = 1.0) -> None:
    """An event (or its share ``weight``) has gone all the way through."""
    now = time.monotonic()
    if not _progress["first"]:
        _progress["first"] = now
    _progress["count"] += weight
    _progress["last"] = now


def _cell(sku: str, region: str) -> str:
    return "|".join([*CATALOG.get(sku, UNKNOWN), region])


def _pv_cell(pv: PageView) -> str:
    return _cell(pv.sku, pv.region)


@app.agent(pageviews)
async def on_pageview(stream: Any) -> None:
    async for pv in stream.group_by(_pv_cell, name="pv-by-cell"):
        _seen()
        cell = _pv_cell(pv)
        for table in TABLES:
            table[f"{cell}|pageviews"] += 1


@app.agent(orders)
async def on_order(stream: Any) -> None:
    async for order in stream:
        ts_s = parse_event_time(order.ts) / 1000
        w = 1 / len(order.lines)
        for line in order.lines:
            cell = _cell(line.sku, order.region)
            if order.event_type == "order_placed":
                value = Keyed(cell, ts_s, orders=1, units=line.qty,
                              gmv_e4=line.qty * round(line.unit_price * 10_000), w=w)
            else:
                value = Keyed(cell, ts_s, cancelled=line.qty, w=w)
            await cells.send(key=cell, value=value)


@app.agent(logistics)
async def on_logistics(stream: Any) -> None:
    async for ev in stream:
        if ev.event_type != "returned":
            _seen()  # no demand: done here
        else:
            cell = _cell(ev.sku, ev.region)
            await cells.send(
                key=cell, value=Keyed(cell, parse_event_time(ev.ts) / 1000, returned=ev.qty)
            )


@app.agent(cells)
async def aggregate(stream: Any) -> None:
    # order lines and returns, already keyed (repartitioned) by cell when sent
    async for k in stream:
        _seen(k.w)
        for table in TABLES:
            for m in MEASURES:
                n = getattr(k, m)
                if n:
                    table[f"{k.cell}|{m}"] += n


@app.timer(0.5)
async def report() -> None:
    STATUS.write_text(json.dumps(_progress))


if __name__ == "__main__":
    sys.argv = [sys.argv[0], "worker", "-l", "warn", "--without-web"]
    app.main()
