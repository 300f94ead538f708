"""Poison input (issue 5, scenario d): every bad message is dead-lettered with its reason and
source coordinates, valid events around it (including emoji and right-to-left text) are
counted exactly, and no partition stalls."""

from __future__ import annotations

import json
import time
from collections import Counter
from typing import Any

import orjson
import pytest
from kafka import KafkaProducer

from tests import oracle
from tests.chaos.cluster import assert_metrics_ledger_balanced, assert_stored_ledger
from tests.integration.conftest import consume_all

pytestmark = [pytest.mark.integration, pytest.mark.slow]

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


def test_poison_is_dead_lettered_and_nothing_stalls(broker: Any, worker_factory: Any) -> None:
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all",
                             max_request_size=8 * 1024 * 1024)
    for p in PRODUCTS:
        producer.send("shop.products", key=p["sku"].encode(), value=_raw(p))
    valid: list[dict[str, Any]] = []
    n = 0
    for name, raw, _ in POISON:
        for _ in range(3):  # valid events around each poison message, same partition
            ev = order(n, sku="ABC"[n % 3])
            valid.append(ev)
            producer.send("shop.orders", key=b"k", value=_raw(ev), partition=0)
            n += 1
        producer.send("shop.orders", key=name.encode(), value=raw, partition=0)
    producer.flush()
    producer.close()

    worker = worker_factory().start()
    stats = worker.wait_consumed(len(valid) + len(POISON))
    assert stats["dead_lettered"] == len(POISON)
    assert stats["processed"] == len(valid)

    dead = {d.key.decode(): json.loads(d.value)
            for d in consume_all(broker.bootstrap, "c2m.dead-letter", len(POISON))}
    for name, raw, reason in POISON:
        env = dead[name]
        assert env["reason"] == reason, (name, env["reason"], env["detail"])
        assert env["source"]["topic"] == "shop.orders" and env["source"]["partition"] == 0
        assert env["value_bytes"] == len(raw)
        assert len(env["detail"]) < 2100
    assert dead["5 MB value"]["value_truncated"] is True
    offsets = sorted(e["source"]["offset"] for e in dead.values())
    assert len(set(offsets)) == len(POISON)

    assert_metrics_ledger_balanced(worker)
    assert worker.stop() == 0
    assert_stored_ledger(worker.query, Counter({"shop.orders": len(valid) + len(POISON)}))
    want = oracle.demand(PRODUCTS, [("shop.orders", ev) for ev in valid], (300,))
    rows = worker.query(
        "SELECT toUnixTimestamp(window_start), category, color, size, price_band, region, "
        "orders, units FROM c2m.demand_by_attribute WHERE window_seconds = 300"
    )
    got = {(300, *r[:6]): (r[6], r[7]) for r in rows}
    assert got == {k: (v["orders"], v["units"]) for k, v in want.items()}
    assert any("🧦" in k[2] for k in got) and any("כוסות" in k[2] for k in got)
