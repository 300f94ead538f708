"""An independent plain-Python oracle for demand numbers.

It shares no code with ``streams``: it reads the simulator's JSON values, parses
timestamps with ``datetime.fromisoformat``, keeps its own catalog and price-band table,
finds local days by stepping through the zone with ``zoneinfo``, and counts with floats
and dicts.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from functools import cache
from typing import Any
from zoneinfo import ZoneInfo

#: the market zone the integration suites run workers in (the product default)
MARKET_TZ = "Asia/Shanghai"
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


def _local_date(t: int, zone: ZoneInfo) -> date:
    return datetime.fromtimestamp(t, UTC).astimezone(zone).date()


@cache
def day_start(d: date, tz: str) -> int:
    """The first second whose local date is ``d``: from 03:00 UTC of the day before
    (every offset is within +-14 h), step a minute at a time."""
    zone = ZoneInfo(tz)
    t = int(datetime(d.year, d.month, d.day, tzinfo=UTC).timestamp()) - 15 * 3600
    while _local_date(t, zone) < d:
        t += 60
    return t


def window_start(t: int, w: int, tz: str) -> int:
    """Start of the window of ``w`` seconds holding ``t`` in the market zone ``tz``: local
    midnight for a day (k-day windows from Monday 1970-01-05); for shorter windows the epoch
    floor when the zone's current offset divides them, else local tiling from midnight."""
    zone = ZoneInfo(tz)
    if w >= 86400:
        d = _local_date(t, zone)
        k = w // 86400
        first = d - timedelta(days=(d.toordinal() - date(1970, 1, 5).toordinal()) % k)
        return day_start(first, tz)
    offset = datetime.fromtimestamp(t, UTC).astimezone(zone).utcoffset()
    assert offset is not None
    if int(offset.total_seconds()) % w == 0:
        return t - t % w
    start = day_start(_local_date(t, zone), tz)
    return start + (t - start) // w * w


def demand(
    products: Iterable[dict[str, Any]],
    events: Iterable[tuple[Any, ...]],
    window_seconds: Iterable[int] = (300, 3600, 86400),
    *,
    lateness_ms: int = 600_000,
    horizon_ms: int | None = None,
    late: list[dict[str, Any]] | None = None,
    timezone: str = "UTC",
    shops: dict[tuple[Any, ...], dict[str, set[str]]] | None = None,
) -> dict[tuple[Any, ...], dict[str, float]]:
    """(window_seconds, window_start_s, category, color, size, price_band, region) -> measures.

    ``events`` are ``(topic, value)`` or ``(topic, partition, value)`` in delivery order.
    With ``horizon_ms``, an event more than that behind its partition's watermark (max ts of
    applied events minus ``lateness_ms``) is not counted and is appended to ``late``.
    Windows are in the market time zone ``timezone`` (``window_start``).
    With ``shops``, fills cell -> {"orders": shop ids with orders placed in the cell,
    "views": with page views, "returns": with cancels or returns}.
    """

    def shop(key: tuple[Any, ...], role: str, shop_id: str) -> None:
        if shops is not None:
            shops.setdefault(key, {"orders": set(), "views": set(), "returns": set()})[
                role].add(shop_id)

    catalog: dict[str, tuple[str, str, str, str]] = {}
    for p in products:
        catalog[p["sku"]] = (p["category"], p["color"], p["size"], band(p["list_price"]))
    sizes = list(window_seconds)
    out: dict[tuple[Any, ...], dict[str, Any]] = defaultdict(
        lambda: {"orders": 0, "units": 0, "gmv": 0.0, "cancelled_units": 0,
                 "returned_units": 0, "pageviews": 0, "visitors": set()}
    )
    seen: set[str] = set()
    newest: dict[tuple[str, int], int] = {}
    unknown = ("unknown", "unknown", "unknown", "unknown")
    for item in events:
        topic, partition, ev = (item[0], 0, item[1]) if len(item) == 2 else item
        if ev["event_id"] in seen:
            continue
        seen.add(ev["event_id"])
        t_ms = ts_ms(ev["ts"])
        src = (topic, partition)
        behind = newest[src] - lateness_ms - t_ms if src in newest else 0
        if horizon_ms is not None and behind > horizon_ms:
            if late is not None:
                late.append(ev)
            continue
        newest[src] = max(newest.get(src, t_ms), t_ms)
        t = t_ms // 1000
        for w in sizes:
            start = t - t % w if timezone == "UTC" else window_start(t, w, timezone)
            if topic == "shop.orders":
                cells = set()
                for line in ev["lines"]:
                    key = (w, start, *catalog.get(line["sku"], unknown), ev["region"])
                    shop(key, "orders" if ev["event_type"] == "order_placed" else "returns",
                         ev["shop_id"])
                    if ev["event_type"] == "order_placed":
                        out[key]["units"] += line["qty"]
                        out[key]["gmv"] += line["qty"] * line["unit_price"]
                        cells.add(key)
                    else:
                        out[key]["cancelled_units"] += line["qty"]
                for key in cells:
                    out[key]["orders"] += 1
            elif topic == "shop.pageviews":
                key = (w, start, *catalog.get(ev["sku"], unknown), ev["region"])
                out[key]["pageviews"] += 1
                out[key]["visitors"].add(ev["visitor_id"])
                shop(key, "views", ev["shop_id"])
            elif topic == "shop.logistics" and ev["event_type"] == "returned":
                key = (w, start, *catalog.get(ev["sku"], unknown), ev.get("region") or "unknown")
                out[key]["returned_units"] += ev["qty"]
                shop(key, "returns", ev["shop_id"])
    result: dict[tuple[Any, ...], dict[str, float]] = {}
    for key, m in out.items():
        visitors = m.pop("visitors")
        m["unique_visitors"] = len(visitors)
        m["net_units"] = m["units"] - m["cancelled_units"] - m["returned_units"]
        m["conversion_rate"] = m["orders"] / m["pageviews"] if m["pageviews"] else 0.0
        result[key] = m
    return result
