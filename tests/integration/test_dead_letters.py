"""Every kind of invalid event lands in c2m.dead-letter with its reason and coordinates,
and the valid events around it are still counted."""

from __future__ import annotations

import json
import time
from typing import Any

import orjson
import pytest

from tests.helpers.processes import consume_all, produce

pytestmark = pytest.mark.integration

T0 = 1_794_398_400_000
PRODUCT = {
    "event_id": "p1",
    "event_type": "product_upsert",
    "ts": 0,
    "shop_id": "s",
    "sku": "A",
    "factory_id": "F1",
    "category": "袜子",
    "color": "雾霾蓝",
    "size": "1-3岁",
    "list_price": 15.0,
    "lead_time_days": 7,
    "moq": 100,
}


def order(i: int, **changes: Any) -> bytes:
    ev = {
        "event_id": f"o{i}",
        "event_type": "order_placed",
        "ts": T0 + i,
        "shop_id": "s",
        "order_id": f"o{i}",
        "region": "浙江",
        "buyer_id": "b",
        "lines": [{"sku": "A", "qty": 2, "unit_price": 9.5}],
    }
    ev.update(changes)
    return orjson.dumps(ev)


BAD: list[tuple[str, bytes, str]] = [
    ("shop.orders", b"not json at all", "invalid_json"),
    ("shop.orders", b"[1, 2, 3]", "not_object"),
    (
        "shop.orders",
        order(900, lines=[{"sku": "A", "qty": "2", "unit_price": 9.5}]),
        "invalid_field",
    ),
    ("shop.orders", b'{"event_id": "x", "event_type": "order_placed"}', "missing_field"),
    ("shop.orders", order(901, event_type="order_exploded"), "unknown_event_type"),
    ("shop.orders", order(902, lines=[{"sku": "A", "qty": 0, "unit_price": 9.5}]), "invalid_field"),
    ("shop.orders", order(903, lines=[{"sku": "A", "qty": 1, "unit_price": -1}]), "invalid_field"),
    ("shop.orders", order(904, ts="11/11/2026 8pm"), "invalid_ts"),
    (
        "shop.pageviews",
        b'{"event_id": "v", "event_type": "page_view", "ts": 1, "sku": 5}',
        "invalid_field",
    ),
    (
        "shop.logistics",
        b'{"event_id": "l", "event_type": "teleported", "ts": 1, '
        b'"shop_id": "s", "sku": "A", "qty": 1}',
        "unknown_event_type",
    ),
    ("shop.orders", order(905, ts=int(time.time() * 1000) + 86_400_000), "future_ts"),
    ("shop.products", b"{}", "missing_field"),
]


def test_invalid_events_are_dead_lettered_and_processing_continues(
    broker: Any, worker_factory: Any
) -> None:
    messages: list[tuple[str, bytes | None, bytes]] = [
        ("shop.products", b"A", orjson.dumps(PRODUCT))
    ]
    for i, (topic, raw, _) in enumerate(BAD):
        messages.append(("shop.orders", b"k", order(i)))
        messages.append((topic, f"bad{i}".encode(), raw))
    messages.append(("shop.orders", b"k", order(len(BAD))))
    produce(broker.bootstrap, messages)

    worker = worker_factory().start()
    demand_msgs = len(messages) - 2  # the product and the bad product are catalog messages
    stats = worker.wait_consumed(demand_msgs)
    assert stats["dead_lettered"] == len(BAD) - 1

    dead = consume_all(broker.bootstrap, "c2m.dead-letter", len(BAD))
    assert len(dead) == len(BAD)
    by_key = {d.key.decode(): json.loads(d.value) for d in dead}
    for i, (topic, raw, reason) in enumerate(BAD):
        env = by_key[f"bad{i}"]
        assert env["reason"] == reason, (i, env)
        assert env["source"]["topic"] == topic
        assert env["source"]["offset"] >= 0 and env["source"]["partition"] >= 0
        assert env["value_bytes"] == len(raw)
        assert env["value_utf8"] == raw.decode()

    assert worker.stop() == 0
    rows = worker.query(
        "SELECT sum(orders), sum(units) FROM c2m.demand_by_attribute WHERE window_seconds = 300"
    )
    assert rows == [(len(BAD) + 1, 2 * (len(BAD) + 1))]
