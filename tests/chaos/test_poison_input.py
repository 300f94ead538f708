"""Poison input (issue 5, scenario d): every bad message is dead-lettered with its reason and
source coordinates, valid events around it (including emoji and right-to-left text) are
counted exactly, and no partition stalls."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import orjson
import pytest
from kafka import KafkaProducer

from tests import oracle
from tests.chaos.cluster import assert_metrics_ledger_balanced, assert_stored_ledger
from tests.helpers.poison import POISON, PRODUCTS, order
from tests.helpers.processes import consume_all

pytestmark = [pytest.mark.integration, pytest.mark.slow]

def test_poison_is_dead_lettered_and_nothing_stalls(broker: Any, worker_factory: Any) -> None:
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all",
                             max_request_size=8 * 1024 * 1024)
    for p in PRODUCTS:
        producer.send("shop.products", key=p["sku"].encode(), value=orjson.dumps(p))
    valid: list[dict[str, Any]] = []
    n = 0
    for name, raw, _ in POISON:
        for _ in range(3):  # valid events around each poison message, same partition
            ev = order(n, sku="ABC"[n % 3])
            valid.append(ev)
            producer.send("shop.orders", key=b"k", value=orjson.dumps(ev), partition=0)
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
