"""The Quix Streams baseline: the same aggregation with ``group_by`` and tumbling windows.

Per topic a StreamingDataFrame: event time from the event's ``ts`` (timestamp extractor),
order lines exploded, ``group_by`` the attribute cell, then a tumbling 5-minute, 1-hour
and 1-day window reducing the measure vector (RocksDB state, changelog topics), as the
Quix documentation shows. Run by ``python -m bench`` as a subprocess (environment as for
``bench.faust_app``); it writes ``{"count", "first", "last"}`` to the status file every
0.5 s and is stopped by the parent.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from quixstreams import Application

from schemas.types import parse_event_time

BOOTSTRAP = os.environ.get("BENCH_BOOTSTRAP", "127.0.0.1:9092")
_CATALOG_FILE = os.environ.get("BENCH_CATALOG")
CATALOG: dict[str, list[str]] = json.loads(Path(_CATALOG_FILE).read_text()) if _CATALOG_FILE else {}
STATUS = Path(os.environ.get("BENCH_STATUS", "bench-quix-status.json"))
UNKNOWN = ["unknown"] * 4
SIZES_MS = (300_000, 3_600_000, 86_400_000)

_progress = {"count": 0, "first": 0.0, "last": 0.0}
_written = [0.0]


def _started(value: Any) -> None:
    if not _progress["first"]:
        _progress["first"] = time.monotonic()


def _done(value: dict[str, Any]) -> None:
    """After the repartition: an event counts once all its records got here (weights)."""
    now = time.monotonic()
    _progress["count"] += value["w"]
    _progress["last"] = now
    if now - _written[0] > 0.5:
        _written[0] = now
        STATUS.write_text(json.dumps(_progress))
    if now - _written[0] > 0.5:
        _written[0] = now
        STATUS.write_text(json.dumps(_progress))


def _ts(value: Any, headers: Any, timestamp: int, timestamp_type: Any) -> int:
    return parse_event_time(value["ts"])


def _cell(sku: str, region: str) -> str:
    return "|".join([*CATALOG.get(sku, UNKNOWN), region])


def _measures(value: dict[str, Any]) -> list[dict[str, Any]]:
    """The event's measure records, each with its share ``w`` of the event."""
    out = _records(value) or [{"cell": "none"}]  # no demand: still goes the whole way
    for m in out:
        m["w"] = 1 / len(out)
    return out


def _records(value: dict[str, Any]) -> list[dict[str, Any]]:
    kind = value["event_type"]
    if kind == "page_view":
        return [{"cell": _cell(value["sku"], value["region"]), "pageviews": 1}]
    if kind == "order_placed":
        return [
            {"cell": _cell(ln["sku"], value["region"]), "orders": 1, "units": ln["qty"],
             "gmv_e4": ln["qty"] * round(ln["unit_price"] * 10_000)}
            for ln in value["lines"]
        ]
    if kind == "order_cancelled":
        return [{"cell": _cell(ln["sku"], value["region"]), "cancelled": ln["qty"]}
                for ln in value["lines"]]
    if kind == "returned":
        return [{"cell": _cell(value["sku"], value.get("region") or "unknown"),
                 "returned": value["qty"]}]
    return []


MEASURES = ("orders", "units", "gmv_e4", "cancelled", "returned", "pageviews")


def _add(acc: dict[str, int], m: dict[str, Any]) -> dict[str, int]:
    for k in MEASURES:
        acc[k] = acc.get(k, 0) + m.get(k, 0)
    return acc


def _init(m: dict[str, Any]) -> dict[str, int]:
    return _add({}, m)


def main() -> None:
    app = Application(
        broker_address=BOOTSTRAP,
        consumer_group=os.environ.get("BENCH_APP_ID", "bench-quix"),
        auto_offset_reset="earliest",
        state_dir=os.environ.get("BENCH_STATE_DIR", "bench-quix-state"),
        loglevel="WARNING",
    )
    for name in ("shop.pageviews", "shop.orders", "shop.logistics"):
        topic = app.topic(name, value_deserializer="json", timestamp_extractor=_ts)
        sdf = app.dataframe(topic)
        sdf = sdf.update(_started)
        sdf = sdf.apply(_measures, expand=True)
        sdf = sdf.group_by(lambda m: m["cell"], name=f"{name}-by-cell")
        sdf = sdf.update(_done)
        for size in SIZES_MS:
            sdf.tumbling_window(duration_ms=size, name=f"w{size}").reduce(_add, _init).current()
    app.run()


if __name__ == "__main__":
    main()
