"""The poison corpus of the chaos suite (issue 5, scenario d): bad messages with the
reason each must be dead-lettered with, and the catalog and orders around them (emoji and
right-to-left text in valid fields). The fast-path tests run it through both decoders."""

from __future__ import annotations

import time
from typing import Any

import orjson

T0 = 1_794_398_400_000  # 2026-11-11T12:00:00Z, well within a year of the record time
PRODUCTS = [
    {"event_id": f"p{i}", "event_type": "product_upsert", "ts": 0, "shop_id": "s", "sku": sku,
     "factory_id": "F1", "category": cat, "color": color, "size": size, "list_price": price,
     "lead_time_days": 7, "moq": 100}
    for i, (sku, cat, color, size, price) in enumerate([
        ("A", "袜子", "雾霾蓝", "1-3岁", 15.0),
        ("B", "🧦 socks", "🌈 rainbow", "XL", 55.0),
        ("C", "כוסות", "כחול", "גדול", 120.0),  # Hebrew: cups, blue, large
    ])
]


def order(i: int, sku: str = "A", **changes: Any) -> dict[str, Any]:
    ev: dict[str, Any] = {
        "event_id": f"o{i}", "event_type": "order_placed", "ts": T0 + i * 1000,
        "shop_id": "s", "order_id": f"o{i}", "region": ["浙江", "مصر", "🏝 海南"][i % 3],
        "buyer_id": "b", "lines": [{"sku": sku, "qty": 1 + i % 4, "unit_price": 9.5}],
    }
    ev.update(changes)
    return ev


def _raw(ev: dict[str, Any]) -> bytes:
    return orjson.dumps(ev)


NOW_MS = int(time.time() * 1000)
POISON: list[tuple[str, bytes, str]] = [
    ("not json", b"{this is not json", "invalid_json"),
    ("json array", b'[{"event_id": "x"}]', "not_object"),
    ("json string", b'"order"', "not_object"),
    ("wrong type", _raw(order(900, lines=[{"sku": "A", "qty": "🧦", "unit_price": 1}])),
     "invalid_field"),
    ("missing field", _raw({k: v for k, v in order(901).items() if k != "order_id"}),
     "missing_field"),
    ("5 MB value", _raw(order(902, buyer_id="x" * 5_000_000)), "too_large"),
    ("deep nesting", b'{"a":' * 10_000 + b"1" + b"}" * 10_000, "invalid_json"),
    ("NUL in text", _raw(order(903, region="浙\u0000江")), "invalid_field"),
    ("lone surrogate", _raw(order(904)).replace(b'"b"', b'"\\udc00"'),
     "invalid_json"),
    ("unknown event type", _raw(order(905, event_type="order_teleported")),
     "unknown_event_type"),
    ("negative quantity", _raw(order(906, lines=[{"sku": "A", "qty": -3, "unit_price": 1}])),
     "invalid_field"),
    ("NaN price", _raw(order(907)).replace(b'"unit_price":9.5', b'"unit_price":NaN'),
     "invalid_field"),
    ("infinite price", _raw(order(908)).replace(b'"unit_price":9.5', b'"unit_price":1e999'),
     "invalid_field"),
    ("year 1970", _raw(order(909, ts=0)), "stale_ts"),
    ("year 9999", _raw(order(910, ts="9999-12-31T23:59:59Z")), "future_ts"),
    ("emoji as quantity type", _raw(order(911, lines=[{"sku": "A", "qty": 1, "unit_price": "💰"}])),
     "invalid_field"),
    ("RTL override in id", _raw(order(912, order_id="\u202e\u0000")), "invalid_field"),
]
