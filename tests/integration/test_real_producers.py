"""Issue 18: what real shops send. librdkafka (``confluent-kafka``, the client most shops'
services use) and aiokafka, each with every Kafka compression codec, headers, null keys and
tombstones, into a running worker: the numbers equal the oracle, the ledger balances, the
worker never restarts, a tombstone on a demand topic is dead-lettered as ``tombstone`` and
one on the catalog deletes its product."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer
from confluent_kafka import Producer

from streams.sim.model import generate_history
from tests import oracle
from tests.helpers.processes import consume_all

pytestmark = pytest.mark.integration

CODECS = ("none", "gzip", "snappy", "lz4", "zstd")
START_MS = 1_794_398_400_000  # 2026-11-11T12:00Z
HEADERS = [("traceparent", b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
           ("shop-system", "有赞".encode())]

Message = tuple[str, bytes | None, bytes | None]


def _librdkafka(bootstrap: str, codec: str, messages: list[Message]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "compression.type": codec,
                         "linger.ms": 20, "acks": "all", "enable.idempotence": False})
    failed: list[Any] = []
    for topic, key, value in messages:
        producer.produce(topic, value=value, key=key, headers=HEADERS,
                         on_delivery=lambda err, _msg: failed.append(err) if err else None)
        producer.poll(0)
    assert producer.flush(60) == 0 and not failed, failed


async def _aiokafka(bootstrap: str, codec: str, messages: list[Message]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, acks="all",
                                compression_type=None if codec == "none" else codec)
    await producer.start()
    try:
        sent = [await producer.send(topic, value=value, key=key, headers=HEADERS)
                for topic, key, value in messages]
        await asyncio.gather(*sent)
    finally:
        await producer.stop()


def test_every_codec_from_librdkafka_and_aiokafka(broker: Any, worker_factory: Any) -> None:
    events = generate_history(17, START_MS, 1.0, orders_per_hour=400)
    products = [e for e in events if e.topic == "shop.products"]
    demand = [e for e in events if e.topic != "shop.products"]
    assert len(demand) > 5000
    # a product no event sells, then its tombstone: deleted from the catalog
    gone = {**products[0].value, "sku": "SKU-GONE", "event_id": "p-gone"}
    catalog: list[Message] = [("shop.products", e.key.encode(), orjson.dumps(e.value))
                              for e in products]
    catalog += [("shop.products", b"SKU-GONE", orjson.dumps(gone)),
                ("shop.products", b"SKU-GONE", None)]
    _librdkafka(broker.bootstrap, "zstd", catalog)
    # every 9th message without a key (the client picks its partition)
    messages: list[Message] = [
        (e.topic, None if i % 9 == 0 else e.key.encode(), orjson.dumps(e.value))
        for i, e in enumerate(demand)
    ]
    tombstones: list[Message] = [("shop.orders", b"o-1", None), ("shop.pageviews", None, None),
                                 ("shop.logistics", b"k", None)]
    slices = [messages[i::10] for i in range(10)]
    for i, codec in enumerate(CODECS):
        _librdkafka(broker.bootstrap, codec, slices[2 * i] + tombstones[i : i + 1])
        asyncio.run(_aiokafka(broker.bootstrap, codec, slices[2 * i + 1]))
    n = len(messages) + len(tombstones)

    worker = worker_factory(C2M_KAFKA_COMPRESSION="zstd").start()
    pid = worker.proc.pid
    stats = worker.wait_consumed(n, timeout=300)
    metrics_url = f"http://127.0.0.1:{worker.env['C2M_METRICS_PORT']}/metrics"
    with urllib.request.urlopen(metrics_url, timeout=5) as resp:
        exposition = resp.read().decode()
    assert worker.proc.pid == pid and worker.proc.poll() is None  # never restarted
    assert worker.stop() == 0
    assert "c2m_catalog_tombstones_total 1.0" in exposition
    assert stats["consumed"] == n
    assert stats["consumed"] == (stats["processed"] + stats["dead_lettered"]
                                 + stats["duplicates"] + stats["late"])
    assert stats["dead_lettered"] == len(tombstones) and stats["late"] == 0
    assert "Traceback" not in worker.log_tail(10**6)

    want = oracle.demand([e.value for e in products], [(e.topic, e.value) for e in demand],
                         timezone=oracle.MARKET_TZ)
    rows = worker.query(
        "SELECT window_seconds, toUnixTimestamp(window_start), category, color, size, "
        "price_band, region, orders, units, pageviews, returned_units FROM c2m.demand_by_attribute")
    got = {tuple(r[:7]): tuple(r[7:]) for r in rows}
    assert got == {k: (w["orders"], w["units"], w["pageviews"], w["returned_units"])
                   for k, w in want.items()}
    # the dead letters name the reason and where each came from; compressed with zstd
    dead = consume_all(broker.bootstrap, "c2m.dead-letter", len(tombstones))
    envelopes = [json.loads(d.value) for d in dead]
    assert sorted(e["source"]["topic"] for e in envelopes) == sorted(t for t, *_ in tombstones)
    assert {e["reason"] for e in envelopes} == {"tombstone"}
    assert worker.query("SELECT count() FROM c2m.products_current WHERE sku = 'SKU-GONE'") == [
        (0,)]
