"""``python -m bench``: c2m-pulse throughput, latency and memory against the raw Kafka ceiling,
idiomatic Faust and Quix Streams, all measured in the same run.

On the embedded broker (Tansu, 4 partitions per demand topic) it pre-produces N simulator
events (orders, page views, logistics; default 1,000,000) and then measures, median of
--runs each:

- raw ceiling: one aiokafka consumer, ``getmany``, ``orjson.loads`` only;
- c2m-pulse end to end: one `c2m worker` process, from its first consumed event until
  every event is consumed, processed and flushed to ClickHouse with offsets committed;
- idiomatic Faust (``bench/faust_app.py``: Records, group_by, windowed Tables) and Quix
  Streams (``bench/quix_app.py``: group_by, tumbling windows), the same aggregation. They
  run at hundreds to a few thousand events/s, so they are measured as a rate over a
  bounded prefix (--baseline-events or --baseline-seconds, whichever comes first);
- latency (a fresh broker): events produced at half the measured c2m-pulse throughput,
  produced -> committed after the ClickHouse flush (so visible in ``demand_by_attribute``),
  p50 and p99;
- memory: ``python -m bench.memory`` (RSS against live cells and against events).

Not a test: CI may run it once at tiny N to keep it working, never with timed assertions.
Results are written down in bench/RESULTS.md with the date.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer
from kafka import KafkaAdminClient, KafkaProducer, TopicPartition

from streams.core.catalog import Catalog
from streams.core.engine import DEMAND_TOPICS
from streams.kafka.embedded import EmbeddedBroker, free_port
from streams.kafka.topics import ensure_topics
from streams.sim.model import HOUR_MS, SimEvent, generate_history

ROOT = Path(__file__).resolve().parents[1]
T0 = 1_793_491_200_000  # 2026-11-01T00:00:00Z
EVENTS_PER_SIM_HOUR = 3000 * 20  # the simulator at orders_per_hour=3000 (about 20 events/order)


def _history(seed: int, start_ms: int, n: int) -> tuple[list[SimEvent], list[SimEvent]]:
    hours = max(n / EVENTS_PER_SIM_HOUR * 1.1, 0.5)
    history = generate_history(seed, start_ms, hours, orders_per_hour=3000)
    products = [e for e in history if e.topic == "shop.products"]
    return products, [e for e in history if e.topic != "shop.products"][:n]


def produce(bootstrap: str, n: int, seed: int, catalog_file: Path | None = None) -> int:
    products, demand = _history(seed, T0, n)
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, batch_size=256 * 1024)
    for e in products:
        producer.send(e.topic, key=e.key.encode(), value=orjson.dumps(e.value))
    for e in demand:
        producer.send(e.topic, key=e.key.encode(), value=orjson.dumps(e.value))
    producer.flush()
    producer.close()
    if catalog_file is not None:
        write_catalog(products, catalog_file)
    return len(demand)


def write_catalog(products: list[SimEvent], path: Path) -> None:
    """sku -> [category, color, size, price band] for the baselines (latest version)."""
    cat = Catalog()
    for e in products:
        v = e.value
        cat.upsert(sku=v["sku"], ts=e.ts_ms, category=v["category"], color=v["color"],
                   size=v["size"], list_price=v["list_price"], factory_id=v["factory_id"],
                   lead_time_days=v["lead_time_days"], moq=v["moq"])
    out = {}
    for sku in cat.skus():
        a = cat.latest(sku)
        assert a is not None  # noqa: S101 - listed by the catalog itself
        out[sku] = [a.category, a.color, a.size, a.price_band]
    path.write_text(json.dumps(out, ensure_ascii=False))


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
                seen += len(msgs)
    finally:
        await consumer.stop()
    return n / (time.perf_counter() - (start or time.perf_counter()))


def _start_worker(bootstrap: str, app_id: str, port: int) -> tuple[subprocess.Popen[bytes], Path]:
    """A ``c2m worker`` on a fresh data directory; its output goes to ``worker.log`` there
    (named when the bench fails, so a failed run can be told apart from a slow one)."""
    data = Path(tempfile.mkdtemp(prefix="c2m-bench-"))
    log = data / "worker.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "streams.cli", "worker"],
                                env=_worker_env(bootstrap, app_id, port, data),
                                stdout=out, stderr=subprocess.STDOUT)
    return proc, log


def _worker_env(bootstrap: str, app_id: str, port: int, data: Path) -> dict[str, str]:
    return {**os.environ, "C2M_KAFKA_BOOTSTRAP": bootstrap, "C2M_DATA_DIR": str(data),
            "C2M_WEB_PORT": str(port), "C2M_METRICS_PORT": "0", "C2M_APP_ID": app_id,
            "C2M_REBALANCE_TIMEOUT_SECONDS": "3", "C2M_SESSION_TIMEOUT_SECONDS": "6",
            # the bench replays November 2026: keep its windows whatever today's date
            "C2M_RETENTION_DAYS": "{}", "C2M_RETENTION_SKU_DAYS": "0"}


def _stats(port: int) -> dict[str, Any]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/stats", timeout=2) as r:
            return dict(json.loads(r.read()))
    except OSError:
        return {"consumed": 0, "pending_events": 1}


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def pulse_end_to_end(bootstrap: str, n: int, run: int, stall_s: float = 120) -> float:
    port = free_port()
    proc, log = _start_worker(bootstrap, f"bench-{run}", port)
    first = None
    seen, moved = -1, time.monotonic()
    try:
        while True:
            stats = _stats(port)
            now = time.perf_counter()
            if stats["consumed"] and first is None:
                first = now
            # done = everything consumed, flushed to ClickHouse and committed
            if stats["consumed"] >= n and stats["pending_events"] == 0:
                break
            if proc.poll() is not None:
                raise RuntimeError(f"c2m worker exited with {proc.returncode}; see {log}")
            progress = stats["consumed"] - stats["pending_events"]
            if progress != seen:
                seen, moved = progress, time.monotonic()
            elif time.monotonic() - moved > stall_s:
                raise RuntimeError(f"c2m worker made no progress in {stall_s:.0f}s "
                                   f"({stats['consumed']:,} of {n:,} consumed); see {log}")
            time.sleep(0.05)
        return n / (now - (first or now))
    finally:
        _stop(proc)


def baseline(module: str, bootstrap: str, catalog: Path, run: int, limit: int,
             seconds: float, timeout_s: float = 300) -> tuple[float, int]:
    """Rate (events/s) of a baseline app over its first ``limit`` events or ``seconds``."""
    work = Path(tempfile.mkdtemp(prefix=f"c2m-bench-{module}-"))
    status = work / "status.json"
    env = {**os.environ, "BENCH_BOOTSTRAP": bootstrap, "BENCH_CATALOG": str(catalog),
           "BENCH_STATUS": str(status), "BENCH_APP_ID": f"bench-{module}-{run}",
           "BENCH_STATE_DIR": str(work / "state"),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    log = (work / "log.txt").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", f"bench.{module}"], env=env, cwd=work,
                            stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + timeout_s
    progress: dict[str, float] = {"count": 0}
    try:
        while time.monotonic() < deadline:
            time.sleep(0.5)
            if proc.poll() is not None:
                raise RuntimeError(f"bench.{module} exited with {proc.returncode}; see {work}")
            try:
                progress = json.loads(status.read_text())
            except (OSError, ValueError):
                continue
            count = progress["count"]
            if count >= limit or (count and progress["last"] - progress["first"] >= seconds):
                break
        else:
            raise RuntimeError(f"bench.{module} made no progress in {timeout_s:.0f}s; see {work}")
    finally:
        _stop(proc)
    span = progress["last"] - progress["first"]
    return (progress["count"] / span if span > 0 else 0.0), int(progress["count"])


def latency(rate: float, seconds: float, seed: int) -> tuple[float, float, int]:
    """p50 and p99 (s) from produce to 'committed after the ClickHouse flush', at ``rate``."""
    n = int(rate * seconds)
    now_ms = int(time.time() * 1000)
    start_ms = now_ms - int((n / EVENTS_PER_SIM_HOUR * 1.1 + 1) * HOUR_MS)
    products, demand = _history(seed, start_ms, n)
    with EmbeddedBroker() as broker:
        ensure_topics(broker.bootstrap, 4)
        producer = KafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=5,
                                 batch_size=256 * 1024)
        for e in products:
            producer.send(e.topic, key=e.key.encode(), value=orjson.dumps(e.value))
        producer.flush()
        port = free_port()
        app_id = "bench-latency"
        proc, _log = _start_worker(broker.bootstrap, app_id, port)
        try:
            _wait_ready(port)
            commits: list[tuple[float, dict[tuple[str, int], int]]] = []
            done = threading.Event()
            poller = threading.Thread(target=_poll_commits,
                                      args=(broker.bootstrap, app_id, commits, done))
            poller.start()
            # "produced" = acknowledged by the broker (the delivery callback's time), so a
            # busy producer's own queueing does not count as pipeline latency
            samples: list[tuple[str, int, int, float]] = []
            encoded = [(e.topic, e.key.encode(), orjson.dumps(e.value)) for e in demand]
            send = _fast_sender(broker.bootstrap, samples) or _sender(producer, samples)
            t_start = time.monotonic()
            tick = 0.01
            per_tick = max(int(rate * tick), 1)
            for i in range(0, len(encoded), per_tick):
                for j, (topic, key, value) in enumerate(encoded[i:i + per_tick]):
                    send(topic, key, value, (i + j) % 50 == 0)
                send(None, None, None, False)  # serve delivery callbacks
                ahead = t_start + (i + per_tick) / rate - time.monotonic()
                if ahead > 0:
                    time.sleep(ahead)
            send(None, None, None, True)  # flush
            del send  # librdkafka's producer goes now, not after the broker has stopped
            producer.flush()
            achieved = len(encoded) / (time.monotonic() - t_start)
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                if commits and all(commits[-1][1].get((t, p), -1) > o for t, p, o, _ in samples):
                    break
                time.sleep(0.2)
            done.set()
            poller.join()
        finally:
            _stop(proc)
            producer.close()
    lat = []
    for topic, partition, offset, sent in samples:
        if sent - t_start < 3:  # warm-up
            continue
        for t, offsets in commits:
            if offsets.get((topic, partition), -1) > offset:
                lat.append(t - sent)
                break
    lat.sort()
    if not lat:
        return float("nan"), float("nan"), int(achieved)
    return lat[len(lat) // 2], lat[min(int(len(lat) * 0.99), len(lat) - 1)], int(achieved)


Sender = Callable[[str | None, bytes | None, bytes | None, bool], None]


def _sender(producer: KafkaProducer, samples: list[tuple[str, int, int, float]]) -> Sender:
    """kafka-python (always installed): about 20-50 us of Python per message."""

    def send(topic: str | None, key: bytes | None, value: bytes | None, sample: bool) -> None:
        if topic is None:
            if sample:
                producer.flush()
            return
        fut = producer.send(topic, key=key, value=value)
        if sample:
            fut.add_callback(lambda md: samples.append(
                (md.topic, md.partition, md.offset, time.monotonic())))

    return send


def _fast_sender(bootstrap: str, samples: list[tuple[str, int, int, float]]) -> Sender | None:
    """librdkafka via confluent-kafka (installed with the `bench` extra, for Quix): a few
    us per message, so half of the worker's throughput can really be offered. Delivery
    callbacks run when the producer is polled (every 10 ms tick), so "acknowledged" may be
    read up to one tick late; that shortens the measured latency by at most 10 ms."""
    try:
        from confluent_kafka import Producer
    except ImportError:
        return None
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5,
                         "enable.idempotence": False})

    def delivered(err: Any, msg: Any) -> None:
        if err is None:
            samples.append((msg.topic(), msg.partition(), msg.offset(), time.monotonic()))

    def send(topic: str | None, key: bytes | None, value: bytes | None, sample: bool) -> None:
        if topic is None:
            producer.flush() if sample else producer.poll(0)
            return
        while True:
            try:
                producer.produce(topic, value, key, on_delivery=delivered if sample else None)
                return
            except BufferError:
                producer.poll(0.01)

    return send


def _wait_ready(port: int, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError("c2m worker did not become ready")


def _poll_commits(bootstrap: str, group: str,
                  out: list[tuple[float, dict[tuple[str, int], int]]],
                  done: threading.Event) -> None:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        while not done.is_set():
            offsets = admin.list_group_offsets(group).get(group, {})
            now = time.monotonic()
            out.append((now, {(tp.topic, tp.partition): meta.offset
                              for tp, meta in offsets.items() if isinstance(tp, TopicPartition)}))
            time.sleep(0.05)
    finally:
        admin.close()


def memory(quick: bool) -> str:
    args = [sys.executable, "-m", "bench.memory"] + (["--quick"] if quick else [])
    return subprocess.run(args, check=True, capture_output=True, text=True).stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--baseline-events", type=int, default=50_000,
                        help="Faust/Quix: measure over at most this many events ...")
    parser.add_argument("--baseline-seconds", type=float, default=30.0,
                        help="... or this many seconds after their first event")
    parser.add_argument("--latency-seconds", type=float, default=20.0)
    parser.add_argument("--skip", default="",
                        help="comma-separated parts to skip: faust,quix,latency,memory")
    args = parser.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    results: dict[str, Any] = {}
    with EmbeddedBroker() as broker:
        ensure_topics(broker.bootstrap, 4)
        catalog = Path(tempfile.mkdtemp(prefix="c2m-bench-")) / "catalog.json"
        t = time.perf_counter()
        n = produce(broker.bootstrap, args.events, args.seed, catalog)
        print(f"produced {n:,} events in {time.perf_counter() - t:.0f}s", flush=True)
        raw = [asyncio.run(raw_ceiling(broker.bootstrap, n)) for _ in range(args.runs)]
        print(f"raw: {[round(x) for x in raw]}", flush=True)
        pulse = [pulse_end_to_end(broker.bootstrap, n, i) for i in range(args.runs)]
        print(f"c2m-pulse: {[round(x) for x in pulse]}", flush=True)
        results["raw"], results["pulse"] = raw, pulse
        for name in ("faust", "quix"):
            if name in skip:
                continue
            runs = [baseline(f"{name}_app", broker.bootstrap, catalog, i, args.baseline_events,
                             args.baseline_seconds) for i in range(args.runs)]
            results[name] = runs
            print(f"{name}: {[(round(r), c) for r, c in runs]}", flush=True)
    r, p = statistics.median(raw), statistics.median(pulse)
    print()
    print(f"events: {n:,} (simulator mix, 4 partitions per topic, embedded Tansu broker)")
    print(f"{'path':<58} {'events/s':>10}  runs")
    print(f"{'raw ceiling: aiokafka getmany + orjson.loads':<58} {r:>10,.0f}  "
          f"{[round(x) for x in raw]}")
    print(f"{'c2m-pulse end to end (1 worker, chDB, offsets committed)':<58} {p:>10,.0f}  "
          f"{[round(x) for x in pulse]}   {p / r:.1%} of raw")
    labels = {"faust": "idiomatic Faust (Record, group_by, windowed Tables)",
              "quix": "Quix Streams (group_by, tumbling windows)"}
    for name, label in labels.items():
        if name in results:
            rates = [x for x, _ in results[name]]
            m = statistics.median(rates)
            counts = [c for _, c in results[name]]
            print(f"{label + ' *':<58} {m:>10,.0f}  {[round(x) for x in rates]}   "
                  f"c2m-pulse = {p / m:,.1f}x  (* prefix of {min(counts):,}-{max(counts):,} "
                  f"events or {args.baseline_seconds:.0f}s)")
    if "latency" not in skip:
        p50, p99, achieved = latency(p / 2, args.latency_seconds, args.seed + 1)
        print(f"latency at half load ({achieved:,} events/s offered): produced -> committed "
              f"after the ClickHouse flush: p50 {p50:.2f}s, p99 {p99:.2f}s")
    if "memory" not in skip:
        print(memory(quick=args.events < 100_000), end="")


if __name__ == "__main__":
    main()
