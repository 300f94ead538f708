"""Issue 18: record batches the worker cannot read. A codec whose library is missing, a batch
that fails its CRC (corrupted on the wire by a proxy in front of the real broker) and a
message above the fetch size: the process stays up, the other partitions go on, the
partition of the bad batch stops with its reason and offset (/readyz, /api/stats, the
metric), and the operator's way out works (install the library and restart; `c2m skip`)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import orjson
import pytest
from confluent_kafka import Producer

from streams.kafka.embedded import EmbeddedBroker, free_port
from streams.kafka.topics import ensure_topics
from streams.sim.model import generate_history
from tests import oracle
from tests.helpers.processes import Worker, consume_all

pytestmark = [pytest.mark.integration, pytest.mark.slow]

START_MS = 1_794_398_400_000
MARKER = b"C2M-POISON-MARKER"


def _events() -> tuple[list[Any], list[Any]]:
    history = generate_history(4, START_MS, 0.5, orders_per_hour=300)
    return ([e for e in history if e.topic == "shop.products"],
            [e for e in history if e.topic != "shop.products"])


def _produce(bootstrap: str, events: list[Any], codec: str = "none",
             partition: int | None = None) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "compression.type": codec,
                         "linger.ms": 10})
    for e in events:
        kwargs = {} if partition is None else {"partition": partition}
        producer.produce(e.topic, value=orjson.dumps(e.value), key=e.key.encode(), **kwargs)
    assert producer.flush(30) == 0


def _readyz(worker: Worker) -> dict[str, Any]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{worker.web_port}/readyz", timeout=3) as r:
            return dict(json.loads(r.read()), status=r.status)
    except urllib.error.HTTPError as exc:
        return dict(json.loads(exc.read()), status=exc.code)
    except OSError:  # not serving yet
        return {"status": 0}


def _wait_stopped(worker: Worker, n: int = 1, timeout: float = 60) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert worker.proc is not None and worker.proc.poll() is None, worker.log_tail()
        body = _readyz(worker)
        if len(body.get("stopped_partitions", [])) >= n:
            assert body["status"] == 503
            return list(body["stopped_partitions"])
        time.sleep(0.5)
    raise AssertionError(f"no partition stopped\n{worker.log_tail()}")


def _rows(worker: Worker) -> dict[tuple[Any, ...], int]:
    rows = worker.query("SELECT window_seconds, toUnixTimestamp(window_start), category, color, "
                        "size, price_band, region, units FROM c2m.demand_by_attribute")
    return {tuple(r[:7]): r[7] for r in rows if r[7]}


def _want(products: list[Any], demand: list[Any]) -> dict[tuple[Any, ...], int]:
    want = oracle.demand([e.value for e in products], [(e.topic, e.value) for e in demand],
                         timezone=oracle.MARKET_TZ)
    return {k: w["units"] for k, w in want.items() if w["units"]}


def test_a_codec_without_its_library_stops_only_its_partition(
    broker: Any, tmp_path: Path
) -> None:
    products, demand = _events()
    orders = [e for e in demand if e.topic == "shop.orders"]
    rest = [e for e in demand if e.topic != "shop.orders"]
    _produce(broker.bootstrap, products)
    _produce(broker.bootstrap, rest)
    _produce(broker.bootstrap, orders[:200], partition=0)
    _produce(broker.bootstrap, orders[200:], codec="snappy", partition=0)  # the poison
    # a worker whose Python lacks the codec library (as before cramjam was a dependency)
    shim = tmp_path / "no-cramjam"
    shim.mkdir()
    (shim / "cramjam.py").write_text("raise ImportError('cramjam blocked by the test')\n")
    data = tmp_path / "data"
    worker = Worker(broker.bootstrap, data, C2M_KAFKA_COMPRESSION="gzip",  # stdlib codec
                    PYTHONPATH=os.pathsep.join([str(shim), os.environ.get("PYTHONPATH", "")]))
    worker.start()
    try:
        stopped = _wait_stopped(worker)
        assert stopped == [{**stopped[0], "topic": "shop.orders", "partition": 0,
                            "reason": "unreadable", "offset": 200}]
        assert "snappy" in stopped[0]["detail"]
        stats = worker.wait_consumed(len(rest) + 200)  # everything else goes on
        assert stats["stopped_partitions"] == stopped
        with urllib.request.urlopen(
                f"http://127.0.0.1:{worker.env['C2M_METRICS_PORT']}/metrics", timeout=5) as r:
            assert ('c2m_partition_stopped{partition="0",reason="unreadable",'
                    'topic="shop.orders"} 1.0') in r.read().decode()
        time.sleep(2)
        assert worker.proc is not None and worker.proc.poll() is None
        assert "We experienced a crash" not in worker.log_tail(10**6)
    finally:
        assert worker.stop() == 0
    # the way out: the library installed (the same worker without the shim), restarted
    fixed = Worker(broker.bootstrap, data).start()
    try:
        fixed.wait_consumed(len(demand))
        time.sleep(2)
        assert not _readyz(fixed)["stopped_partitions"]
    finally:
        assert fixed.stop() == 0
    assert _rows(fixed) == _want(products, demand)


class CorruptingProxy:
    """``tests/chaos/corrupting_proxy.py`` in a child process, in front of the broker."""

    def __init__(self, port: int, upstream: int) -> None:
        self.port, self.upstream = port, upstream
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> CorruptingProxy:
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).with_name("corrupting_proxy.py")),
             str(self.port), str(self.upstream), MARKER.decode()])
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", self.port)) == 0:
                    return self
            time.sleep(0.05)
        raise AssertionError("the proxy did not start")

    def __exit__(self, *exc: object) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()


def test_a_corrupt_batch_stops_its_partition_and_c2m_skip_moves_past_it(tmp_path: Path) -> None:
    products, demand = _events()
    proxy_port = free_port()
    with EmbeddedBroker(log_path=tmp_path / "broker.log", advertised_port=proxy_port) as b, \
            CorruptingProxy(proxy_port, b.port):
        bootstrap = f"127.0.0.1:{proxy_port}"
        ensure_topics(bootstrap, 4)
        orders = [e for e in demand if e.topic == "shop.orders"]
        rest = [e for e in demand if e.topic != "shop.orders"]
        _produce(bootstrap, products)
        _produce(bootstrap, rest)
        _produce(bootstrap, orders[:100], partition=1)
        bad = {**orders[100].value, "buyer_id": MARKER.decode()}
        producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0})
        producer.produce("shop.orders", value=orjson.dumps(bad), partition=1)
        assert producer.flush(10) == 0
        _produce(bootstrap, orders[101:], partition=1)
        data = tmp_path / "data"
        worker = Worker(bootstrap, data).start()
        try:
            stopped = _wait_stopped(worker)
            assert [(s["topic"], s["partition"], s["reason"], s["offset"]) for s in stopped] \
                == [("shop.orders", 1, "unreadable", 100)]
            assert "CRC" in stopped[0]["detail"]
            worker.wait_consumed(len(rest) + 100)
            time.sleep(2)
        finally:
            assert worker.stop() == 0
        # the way out: skip the unreadable record (workers stopped), then start again
        env = {**os.environ, "C2M_DATA_DIR": str(data), "C2M_KAFKA_BOOTSTRAP": bootstrap}
        out = subprocess.run([sys.executable, "-m", "streams.cli", "skip", "--topic",
                              "shop.orders", "--partition", "1", "--to", "101", "--yes"],
                             env=env, capture_output=True, text=True, timeout=120, check=False)
        assert out.returncode == 0, out.stderr[-3000:]
        assert "skipped shop.orders[1] offsets 100..100" in out.stdout
        again = Worker(bootstrap, data).start()
        try:
            stats = again.wait_consumed(len(demand))  # the skipped one included
            time.sleep(2)
            assert not _readyz(again)["stopped_partitions"]
            assert stats["consumed"] == (stats["processed"] + stats["dead_lettered"]
                                         + stats["duplicates"] + stats["late"])
            assert stats["dead_lettered"] == 1
        finally:
            assert again.stop() == 0
        envelopes = [json.loads(d.value) for d in consume_all(bootstrap, "c2m.dead-letter", 1)]
        assert [(e["reason"], e["source"]["topic"], e["source"]["partition"],
                 e["source"]["offset"]) for e in envelopes] == [
            ("unreadable_skipped", "shop.orders", 1, 100)]
        want = _want(products, [e for e in demand if e is not orders[100]])
        got = _rows(again)
        diff = {k: (got.get(k), want.get(k)) for k in set(got) | set(want)
                if got.get(k) != want.get(k)}
        assert not diff, list(diff.items())[:5]


def test_a_message_above_the_fetch_size_is_dead_lettered_and_the_partition_goes_on(
    broker: Any, worker_factory: Any
) -> None:
    products, demand = _events()
    orders = [e for e in demand if e.topic == "shop.orders"]
    _produce(broker.bootstrap, products)
    _produce(broker.bootstrap, orders[:50], partition=2)
    big = Producer({"bootstrap.servers": broker.bootstrap, "message.max.bytes": 20_000_000})
    big.produce("shop.orders", value=b"{" + b" " * (6 * 1024 * 1024) + b"}", partition=2)
    assert big.flush(30) == 0
    _produce(broker.bootstrap, orders[50:], partition=2)
    worker = worker_factory().start()
    stats = worker.wait_consumed(len(orders) + 1)
    assert stats["dead_lettered"] == 1 and not stats["stopped_partitions"]
    assert worker.stop() == 0
    envelopes = [json.loads(d.value) for d in consume_all(broker.bootstrap, "c2m.dead-letter", 1)]
    assert [e["reason"] for e in envelopes] == ["too_large"]
