"""Consumer lag as ops see it on /metrics: end of log minus the flushed position, asked of
the broker, so it grows during a ClickHouse outage (the consumer is paused then and
fetches nothing) and falls back to zero when the flush goes through.

Tansu reports a wrong end offset after a multi-record batch (the batch's base offset + 1),
so every message here is produced as a batch of its own: then its end offsets are right."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaProducer
from prometheus_client.parser import text_string_to_metric_families

from tests.chaos.cluster import metrics_text
from tests.helpers.sim_run import sim_history, sim_messages

pytestmark = pytest.mark.integration


def _produce_one_by_one(bootstrap: str, messages: list[tuple[str, bytes | None, bytes]]) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=0)
    for topic, key, value in messages:
        producer.send(topic, key=key, value=value).get(timeout=30)
    producer.close()


def _lag(worker: Any) -> dict[tuple[str, str], float]:
    return {
        (s.labels["topic"], s.labels["partition"]): s.value
        for fam in text_string_to_metric_families(metrics_text(worker))
        for s in fam.samples if s.name == "c2m_consumer_lag_records"
    }


def _wait_lag(worker: Any, want: int, timeout: float = 60) -> dict[tuple[str, str], float]:
    deadline = time.monotonic() + timeout
    lag: dict[tuple[str, str], float] = {}
    while time.monotonic() < deadline:
        lag = _lag(worker)
        if len(lag) == 12 and sum(lag.values()) == want:  # 3 demand topics x 4 partitions
            return lag
        time.sleep(0.5)
    raise AssertionError(f"consumer lag {lag}, want {want} in all\n{worker.log_tail()}")


def test_consumer_lag_grows_during_an_outage_and_drains(
    broker: Any, worker_factory: Any, tmp_path: Path
) -> None:
    history = [e for e in sim_history(seed=5, hours=0.2, orders_per_hour=300)
               if e.topic != "shop.products"]
    first, second = sim_messages(history[:150]), sim_messages(history[150:210])
    fault = tmp_path / "clickhouse-down"
    worker = worker_factory(C2M_CLICKHOUSE_FAULT_FILE=str(fault),
                            C2M_LAG_INTERVAL_SECONDS="0.5").start()
    _produce_one_by_one(broker.bootstrap, first)
    worker.wait_consumed(len(first))
    _wait_lag(worker, 0)  # flushed and committed: nothing pending anywhere

    fault.touch()  # ClickHouse goes away: flushes fail, the consumer pauses
    _produce_one_by_one(broker.bootstrap, second)
    lag = _wait_lag(worker, len(second))
    assert sum(1 for v in lag.values() if v) >= 3  # spread over the partitions
    time.sleep(2)
    assert sum(_lag(worker).values()) == len(second)  # stays while nothing is flushed

    fault.unlink()  # back: the pending events are flushed and the lag drains
    _wait_lag(worker, 0)
    assert worker.wait_consumed(len(first) + len(second))["consumed"] == 210
    assert worker.stop() == 0
