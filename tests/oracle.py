"""An independent plain-Python oracle for demand numbers.

It shares no code with ``streams``: it reads the simulator's JSON values, parses
timestamps with ``datetime.fromisoformat``, keeps its own catalog and price-band table,
and counts with floats and dicts.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime
from typing import Any

EDGES = [0, 10, 20, 50, 100, 200, 500]
LABELS = ["0-10", "10-20", "20-50", "50-100", "100-200", "200-500", "500+"]


def band(price: float) -> str:
    label = LABELS[0]
    for edge, name in zip(EDGES, LABELS, strict=True):
        if price >= edge:
            label = name
    return label


def ts_ms(value: Any) -> int:
    if isinstance(value, int):
        return value
    dt = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    return int(dt.timestamp() * 1000)


def demand(
    products: Iterable[dict[str, Any]],
    events: Iterable[tuple[str, dict[str, Any]]],
    window_seconds: Iterable[int] = (300, 3600, 86400),
) -> dict[tuple[Any, ...], dict[str, float]]:
    """(window_seconds, window_start_s, category, color, size, price_band, region) -> measures."""
    catalog: dict[str, tuple[str, str, str, str]] = {}
    for p in products:
        catalog[p["sku"]] = (p["category"], p["color"], p["size"], band(p["list_price"]))
    sizes = list(window_seconds)
    out: dict[tuple[Any, ...], dict[str, float]] = defaultdict(
        lambda: {
            "orders": 0,
            "units": 0,
            "gmv": 0.0,
            "cancelled_units": 0,
            "returned_units": 0,
            "pageviews": 0,
        }
    )
    seen: set[str] = set()
    unknown = ("unknown", "unknown", "unknown", "unknown")
    for topic, ev in events:
        if ev["event_id"] in seen:
            continue
        seen.add(ev["event_id"])
        t = ts_ms(ev["ts"]) // 1000
        for w in sizes:
            start = t - t % w
            if topic == "shop.orders":
                cells = set()
                for line in ev["lines"]:
                    key = (w, start, *catalog.get(line["sku"], unknown), ev["region"])
                    if ev["event_type"] == "order_placed":
                        out[key]["units"] += line["qty"]
                        out[key]["gmv"] += line["qty"] * line["unit_price"]
                        cells.add(key)
                    else:
                        out[key]["cancelled_units"] += line["qty"]
                for key in cells:
                    out[key]["orders"] += 1
            elif topic == "shop.pageviews":
                out[(w, start, *catalog.get(ev["sku"], unknown), ev["region"])]["pageviews"] += 1
            elif topic == "shop.logistics" and ev["event_type"] == "returned":
                key = (w, start, *catalog.get(ev["sku"], unknown), ev.get("region") or "unknown")
                out[key]["returned_units"] += ev["qty"]
    return dict(out)
