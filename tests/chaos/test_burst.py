"""A 10x burst (issue 5, scenario e): two workers on the Kafka sink and the writer take a
steady stream, then ten times the rate. The backlog drains (judged by consumed counts, not
by the broker's high watermark), no member is thrown out of the group (the rebalance
counters do not move), and ClickHouse equals the oracle with balanced ledgers."""

from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaProducer

from tests.chaos.cluster import (
    Writer,
    assert_metrics_ledger_balanced,
    assert_stored_ledger,
    consumed,
    metric_value,
    metrics_text,
    wait_until,
)
from tests.helpers.processes import produce
from tests.helpers.sim_run import (
    assert_matches_oracle,
    oracle_cells,
    sim_history,
    sim_messages,
    stored_cells,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]
BASE_RATE = 400  # events per second; the burst is 10x
BURST_SECONDS = 8


class RateProducer(threading.Thread):
    """Sends at BASE_RATE until ``burst`` is set, then at 10x until the list is done."""

    def __init__(self, bootstrap: str, messages: list[tuple[str, bytes | None, bytes]]) -> None:
        super().__init__(daemon=True)
        self.bootstrap, self.messages = bootstrap, messages
        self.burst = threading.Event()
        self.sent = 0
        self.burst_started = self.finished_at = 0.0

    def run(self) -> None:
        producer = KafkaProducer(bootstrap_servers=self.bootstrap, acks="all", linger_ms=5)
        tick = time.monotonic()
        while self.sent < len(self.messages):
            rate = BASE_RATE * (10 if self.burst.is_set() else 1)
            for topic, key, value in self.messages[self.sent:self.sent + rate // 10]:
                producer.send(topic, key=key, value=value)
            self.sent = min(self.sent + rate // 10, len(self.messages))
            producer.flush()
            tick += 0.1
            time.sleep(max(tick - time.monotonic(), 0))
        producer.close()
        self.finished_at = time.monotonic()


def test_ten_x_burst_drains_without_rebalance_storm(
    broker: Any, worker_factory: Any, tmp_path: Path
) -> None:
    history = sim_history(seed=41, hours=2, orders_per_hour=1200)
    catalog = [e for e in history if e.topic == "shop.products"]
    demand = [e for e in history if e.topic != "shop.products"]
    assert len(demand) > BASE_RATE * 10 * BURST_SECONDS
    produce(broker.bootstrap, sim_messages(catalog))

    writer = Writer(broker.bootstrap, tmp_path / "writer").start()
    workers = [worker_factory(**writer.sink_env()).start() for _ in range(2)]
    procs = (writer, *workers)
    source = RateProducer(broker.bootstrap, sim_messages(demand))
    source.start()
    # the steady phase: both members joined and consuming, group settled
    wait_until("both workers consuming", lambda: all(consumed(w) > 0 for w in workers),
               120, *procs)
    time.sleep(3)
    before = [metric_value(metrics_text(w), "c2m_rebalances_total") for w in workers]

    source.burst.set()
    burst_at, sent_at_burst = time.monotonic(), source.sent
    max_lag = 0

    def drained() -> bool:
        nonlocal max_lag
        total = sum(max(consumed(w), 0) for w in workers)
        max_lag = max(max_lag, source.sent - total)
        return total == len(demand)

    wait_until("the burst backlog to drain", drained, 180, *procs)
    source.join()
    drain_s = time.monotonic() - max(source.finished_at, burst_at)
    after = [metric_value(metrics_text(w), "c2m_rebalances_total") for w in workers]
    print(f"burst: max lag {max_lag} events (sampled), drained {drain_s:.1f}s after the last send, "
          f"rebalances {before} -> {after}, {len(demand)} events")
    assert after == before  # no member left or joined during the burst
    burst_rate = (len(demand) - sent_at_burst) / (source.finished_at - burst_at)
    assert burst_rate > 5 * BASE_RATE, burst_rate  # it really was a burst

    for w in workers:
        assert_metrics_ledger_balanced(w)
        assert w.stop() == 0
    wait_until("the writer to hold the final checkpoints",
               lambda: consumed(writer) == len(demand), 60, writer)
    written = writer.stats()
    print(f"writer: {written['messages_written']} c2m.sink messages in {written['writes']} writes")
    assert written["writes"] < written["messages_written"]  # flushes merged: few, large inserts
    assert writer.stop() == 0
    sizes = (300, 3600, 86400)
    assert_matches_oracle(stored_cells(writer, sizes), oracle_cells(history), sizes)
    assert_stored_ledger(writer.query, Counter(e.topic for e in demand))
