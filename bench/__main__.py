"""``python -m bench``: end-to-end throughput of c2m-pulse against the raw Kafka ceiling.

On the embedded broker it pre-produces N simulator events (orders, page views, logistics),
then measures, median of --runs:

- raw ceiling: one aiokafka consumer, ``getmany``, ``orjson.loads`` only;
- c2m-pulse end to end: one `c2m worker` process, from its first consumed event until
  every event is consumed, processed and flushed to ClickHouse with offsets committed
  (measured from the worker's checkpoints).

Not a test: results are written down in bench/RESULTS.md by hand, with the date.
(Issue 7 adds the idiomatic Faust and Quix Streams comparisons, latency and RSS.)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import orjson
from aiokafka import AIOKafkaConsumer
from kafka import KafkaProducer

from streams.core.engine import DEMAND_TOPICS
from streams.kafka.embedded import EmbeddedBroker, free_port
from streams.kafka.topics import ensure_topics
from streams.sim.model import generate_history


def produce(bootstrap: str, n: int, seed: int) -> int:
    hours = max(n / 20 / 3000, 0.5)
    history = generate_history(seed, 1_793_491_200_000, hours, orders_per_hour=3000)
    demand = [e for e in history if e.topic != "shop.products"][:n]
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, batch_size=256 * 1024)
    for e in history:
        if e.topic == "shop.products":
            producer.send(e.topic, key=e.key.encode(), value=orjson.dumps(e.value))
    for e in demand:
        producer.send(e.topic, key=e.key.encode(), value=orjson.dumps(e.value))
    producer.flush()
    producer.close()
    return len(demand)


async def raw_ceiling(bootstrap: str, n: int) -> float:
    consumer = AIOKafkaConsumer(
        *DEMAND_TOPICS, bootstrap_servers=bootstrap, group_id=None,
        auto_offset_reset="earliest", enable_auto_commit=False,
        max_partition_fetch_bytes=4 * 1024 * 1024, fetch_max_bytes=32 * 1024 * 1024,
    )
    await consumer.start()
    seen = 0
    start = None
    try:
        while seen < n:
            batches = await consumer.getmany(timeout_ms=500, max_records=10_000)
            if batches and start is None:
                start = time.perf_counter()
            for msgs in batches.values():
                for m in msgs:
                    orjson.loads(m.value)
                seen += sum(len(v) for v in batches.values())
    finally:
        await consumer.stop()
    return n / (time.perf_counter() - (start or time.perf_counter()))


def pulse_end_to_end(bootstrap: str, n: int, run: int) -> float:
    port = free_port()
    data = Path(tempfile.mkdtemp(prefix="c2m-bench-"))
    env = {**os.environ, "C2M_KAFKA_BOOTSTRAP": bootstrap, "C2M_DATA_DIR": str(data),
           "C2M_WEB_PORT": str(port), "C2M_METRICS_PORT": "0", "C2M_APP_ID": f"bench-{run}",
           "C2M_REBALANCE_TIMEOUT_SECONDS": "3", "C2M_SESSION_TIMEOUT_SECONDS": "6"}
    proc = subprocess.Popen([sys.executable, "-m", "streams.cli", "worker"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    first = None
    try:
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/stats", timeout=2) as r:
                    stats = json.loads(r.read())
            except OSError:
                stats = {"consumed": 0, "pending_events": 1}
            now = time.perf_counter()
            if stats["consumed"] and first is None:
                first = now
            # done = everything consumed, flushed to ClickHouse and committed
            if stats["consumed"] >= n and stats["pending_events"] == 0:
                break
            time.sleep(0.05)
        return n / (now - (first or now))
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=300_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    with EmbeddedBroker() as broker:
        ensure_topics(broker.bootstrap, 4)
        n = produce(broker.bootstrap, args.events, args.seed)
        raw = [asyncio.run(raw_ceiling(broker.bootstrap, n)) for _ in range(args.runs)]
        pulse = [pulse_end_to_end(broker.bootstrap, n, i) for i in range(args.runs)]
    r, p = statistics.median(raw), statistics.median(pulse)
    print(f"events: {n}")
    print(f"raw aiokafka getmany + orjson: {r:,.0f} events/s (runs {[round(x) for x in raw]})")
    print(f"c2m-pulse end to end:          {p:,.0f} events/s (runs {[round(x) for x in pulse]})")
    print(f"ratio: {p / r:.1%} of the raw ceiling")


if __name__ == "__main__":
    main()
