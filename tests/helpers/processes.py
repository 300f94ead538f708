"""Real processes for the integration, chaos and security suites: `c2m worker` children,
producing and consuming with real Kafka clients, reading a stopped worker's chDB, and the
small probes the suites share (``/readyz``, listening sockets, a clean CLI environment).
The fixtures built on them are in ``tests/helpers/fixtures.py``."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kafka import KafkaProducer

from streams.kafka.embedded import free_port
from tests.oracle import MARKET_TZ


class Worker:
    """A `c2m worker` child process with its own data directory and web port."""

    command = "worker"

    def __init__(self, bootstrap: str, data_dir: Path, **env: str) -> None:
        self.bootstrap = bootstrap
        self.data_dir = data_dir
        self.web_port = free_port()
        self.log_path = data_dir.parent / f"worker-{self.web_port}.log"
        self.env = {
            **os.environ,
            "C2M_KAFKA_BOOTSTRAP": bootstrap,
            "C2M_DATA_DIR": str(data_dir),
            "C2M_WEB_PORT": str(self.web_port),
            "C2M_METRICS_PORT": str(free_port()),
            "C2M_REBALANCE_TIMEOUT_SECONDS": "3",
            "C2M_SESSION_TIMEOUT_SECONDS": "6",
            "C2M_LOG_LEVEL": "info",
            # The suites replay fixed dates of 2026; retention counts from event time and
            # would delete their windows as the calendar moves on. test_retention.py
            # covers retention itself.
            "C2M_RETENTION_DAYS": "{}",
            "C2M_RETENTION_SKU_DAYS": "0",
            "C2M_RETENTION_VISITOR_DAYS": "0",
            # the product default, spelled out: the oracle computes local days with it
            "C2M_TIMEZONE": MARKET_TZ,
            **env,
        }
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Worker:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "streams.cli", self.command],
                env=self.env, stdout=log, stderr=subprocess.STDOUT,
            )
        return self

    def stats(self) -> dict[str, Any] | None:
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{self.web_port}/api/stats", timeout=2
            ) as resp:
                return json.loads(resp.read())
        except OSError:
            return None

    def wait_consumed(self, n: int, timeout: float = 120) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        last: dict[str, Any] | None = None
        while time.monotonic() < deadline:
            assert self.proc is not None and self.proc.poll() is None, self.log_tail()
            last = self.stats() or last
            if last and last["consumed"] >= n:
                return last
            time.sleep(0.5)
        raise AssertionError(f"worker consumed {last} of {n} in {timeout}s\n{self.log_tail()}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> int:
        assert self.proc is not None
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise AssertionError(f"worker did not stop in {timeout}s\n{self.log_tail()}") from None

    def log_tail(self, n: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def query(self, sql: str, **params: Any) -> list[tuple[Any, ...]]:
        """Query the worker's chDB *after it stopped* (one engine path per process)."""
        return query_chdb(self.data_dir / "chdb", sql, **params)


_HOLD_SCRIPT = """
import sys, time
import clickhouse_connect
client = clickhouse_connect.get_client(dsn="chdb://" + sys.argv[1])
client.command("SELECT 1")  # opens it (and keeps it open while the client lives)
print("open", flush=True)
time.sleep(600)
"""


@contextlib.contextmanager
def chdb_held_by_another(path: Path) -> Iterator[None]:
    """Another process holds the embedded ClickHouse at ``path`` open (as a running demo
    does), and answers nothing."""
    path.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen([sys.executable, "-c", _HOLD_SCRIPT, str(path)],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "open"
        yield
    finally:
        proc.kill()
        proc.wait()


_QUERY_SCRIPT = """
import json, sys
import clickhouse_connect
path, sql, params = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
client = clickhouse_connect.get_client(dsn="chdb://" + path)
rows = client.query(sql, parameters=params).result_rows
print(json.dumps([list(r) for r in rows], ensure_ascii=False, default=str))
"""


def query_chdb(path: Path, sql: str, **params: Any) -> list[tuple[Any, ...]]:
    """Run a query in a fresh process: chDB allows one engine path per process."""
    out = subprocess.run(
        [sys.executable, "-c", _QUERY_SCRIPT, str(path), sql, json.dumps(params)],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return [tuple(r) for r in json.loads(out.stdout)]


def produce(bootstrap: str, messages: list[tuple[str, bytes | None, bytes]]) -> None:
    """Produce (topic, key, value) with a real Kafka client, in order, and flush."""
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    for topic, key, value in messages:
        producer.send(topic, key=key, value=value)
    producer.flush()
    producer.close()


@dataclass(frozen=True)
class Consumed:
    topic: str
    partition: int
    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]


def consume_all(bootstrap: str, topic: str, expected: int, timeout: float = 30) -> list[Consumed]:
    """Read ``expected`` records from every partition of ``topic`` (no consumer group), with
    librdkafka: every compression codec, whatever the project's producers use."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer
    from confluent_kafka import TopicPartition as Tp

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "c2m-tests-no-commit",
                         "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    meta = consumer.list_topics(topic, timeout=10)
    parts = sorted(meta.topics[topic].partitions) if topic in meta.topics else [0]
    consumer.assign([Tp(topic, p, OFFSET_BEGINNING) for p in parts])
    out: list[Consumed] = []
    deadline = time.monotonic() + timeout
    while len(out) < expected and time.monotonic() < deadline:
        msg = consumer.poll(0.5)
        if msg is None or msg.error():
            continue
        out.append(Consumed(msg.topic(), msg.partition(), msg.offset(), msg.timestamp()[1],
                            msg.key(), msg.value(), list(msg.headers() or [])))
    consumer.close()
    return out


def readyz(port: int) -> tuple[int, dict[str, Any]]:
    """(status, body) of a process's ``/readyz``; (0, {}) while it does not serve yet."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=3) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())
    except OSError:  # not serving yet
        return 0, {}


def listening(port: int) -> set[str]:
    """Local addresses listening on ``port`` (from /proc/net/tcp)."""
    out = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, _, state = line.split()[1:4]
        ip_hex, port_hex = local.split(":")
        if int(port_hex, 16) == port and state == "0A":  # LISTEN
            ip = ".".join(str(int(ip_hex[i : i + 2], 16)) for i in (6, 4, 2, 0))
            out.add(ip)
    return out


def cli_env(tmp_path: Path) -> dict[str, str]:
    """The environment of a `c2m` command run by a test: no C2M_* of the caller, free
    ports, short group timeouts."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("C2M_")}
    env.update(
        C2M_WEB_PORT=str(free_port()),
        C2M_METRICS_PORT=str(free_port()),
        C2M_REBALANCE_TIMEOUT_SECONDS="3",
        C2M_SESSION_TIMEOUT_SECONDS="6",
    )
    return env
