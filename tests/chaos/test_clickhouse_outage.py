"""ClickHouse unavailable for over a minute: the worker pauses, stays bounded, reports not
ready, and catches up without loss when ClickHouse returns (issue 5, scenario c)."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.chaos.cluster import assert_metrics_ledger_balanced, assert_stored_ledger
from tests.helpers.processes import produce, readyz
from tests.helpers.sim_run import (
    assert_matches_oracle,
    oracle_cells,
    sim_history,
    sim_messages,
    stored_cells,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]
#: Documented bound of the RSS growth during an outage with the default settings.
MEMORY_BOUND_MIB = 256


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_clickhouse_outage_pauses_and_catches_up_exactly(
    broker: Any, worker_factory: Any, tmp_path: Path
) -> None:
    history = sim_history(seed=31, hours=2, orders_per_hour=1200)
    demand = [e for e in history if e.topic != "shop.products"]
    half = len(history) // 2
    fault = tmp_path / "clickhouse-down"
    # a flush is due at least every 2,000 events, so the outage is noticed (and the
    # consumer pauses) long before the second half is consumed, however fast it runs
    worker = worker_factory(C2M_CLICKHOUSE_FAULT_FILE=str(fault),
                            C2M_FLUSH_MAX_PENDING_EVENTS="2000",
                            C2M_BATCH_MAX_EVENTS="500").start()
    produce(broker.bootstrap, sim_messages(history[:half]))
    first_half = sum(1 for e in history[:half] if e.topic != "shop.products")
    worker.wait_consumed(first_half)
    assert readyz(worker.web_port)[0] == 200

    time.sleep(2)  # the first half is flushed; the outage hits while events stream in
    rss_before = _rss_kib(worker.proc.pid)
    fault.touch()  # ClickHouse goes away
    produce(broker.bootstrap, sim_messages(history[half:]))
    time.sleep(10)  # the next flush fails and the consumer pauses
    status, body = readyz(worker.web_port)
    assert status == 503 and body["sink_healthy"] is False and body["paused"] is True
    consumed_paused = worker.stats()["consumed"]
    rss_paused = rss_max = _rss_kib(worker.proc.pid)
    for _ in range(11):  # over a minute down in all
        time.sleep(5)
        rss_max = max(rss_max, _rss_kib(worker.proc.pid))
    assert worker.stats()["consumed"] == consumed_paused  # nothing fetched while paused
    assert consumed_paused < len(demand)
    # Memory is bounded (docs/ARCHITECTURE.md, "Memory during an outage"): flat while
    # paused, and the whole outage stays far inside the documented bound for the defaults.
    assert rss_max - rss_paused < 64 * 1024
    assert rss_max - rss_before < MEMORY_BOUND_MIB * 1024, (rss_before, rss_max)
    print(f"outage RSS KiB: before {rss_before}, paused {rss_paused}, max {rss_max}; "
          f"unflushed events {consumed_paused - first_half}")

    fault.unlink()  # ClickHouse is back
    worker.wait_consumed(len(demand))
    deadline = time.monotonic() + 30
    while readyz(worker.web_port)[0] != 200 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert readyz(worker.web_port)[0] == 200
    assert_metrics_ledger_balanced(worker)
    assert worker.stop() == 0

    sizes = (300, 3600, 86400)
    assert_matches_oracle(stored_cells(worker, sizes), oracle_cells(history), sizes)
    assert_stored_ledger(worker.query, Counter(e.topic for e in demand))


def test_a_rebalance_while_clickhouse_is_down_keeps_every_partition_paused(
    broker: Any, worker_factory: Any, tmp_path: Path
) -> None:
    """Issue 18: aiokafka unpauses partitions it assigns anew. Inserts fail (TOO_MANY_PARTS:
    reads still work, so restores succeed), the worker pauses; another member joins the
    group and leaves (two rebalances): every partition the worker gets back must stay
    paused, so nothing is fetched and memory stays bounded until ClickHouse takes writes."""
    import asyncio

    from aiokafka import AIOKafkaConsumer

    history = sim_history(seed=37, hours=2, orders_per_hour=1200)
    demand = [e for e in history if e.topic != "shop.products"]
    half = len(history) // 2
    fault = tmp_path / "clickhouse-overloaded"
    worker = worker_factory(C2M_CLICKHOUSE_FAULT_FILE=str(fault),
                            C2M_FLUSH_MAX_PENDING_EVENTS="2000",
                            C2M_BATCH_MAX_EVENTS="500").start()
    produce(broker.bootstrap, sim_messages(history[:half]))
    worker.wait_consumed(sum(1 for e in history[:half] if e.topic != "shop.products"))
    time.sleep(2)
    rss_before = _rss_kib(worker.proc.pid)
    fault.write_text("overload")
    produce(broker.bootstrap, sim_messages(history[half:]))
    time.sleep(8)
    status, body = readyz(worker.web_port)
    assert status == 503 and body["paused"] is True

    async def join_and_leave() -> None:
        member = AIOKafkaConsumer(
            "shop.orders", "shop.pageviews", "shop.logistics", bootstrap_servers=broker.bootstrap,
            group_id=worker.env.get("C2M_APP_ID", "c2m-pulse"), enable_auto_commit=False,
            rebalance_timeout_ms=3000, session_timeout_ms=6000)
        await member.start()
        deadline = time.monotonic() + 15
        while not member.assignment() and time.monotonic() < deadline:
            await member.getmany(timeout_ms=500)
        assert member.assignment()
        await member.stop()  # leaves: the worker is assigned everything again

    asyncio.run(join_and_leave())
    rebalances_seen = worker.log_tail(10**6).count("partitions assigned:")
    assert rebalances_seen >= 2
    time.sleep(8)  # the worker holds every partition again
    status, body = readyz(worker.web_port)
    assert status == 503 and body["partitions_assigned_count"] == 12
    assert body["partitions_paused"] == 12  # aiokafka assigned them unpaused
    consumed = worker.stats()["consumed"]
    rss_max = _rss_kib(worker.proc.pid)
    for _ in range(4):
        time.sleep(5)
        rss_max = max(rss_max, _rss_kib(worker.proc.pid))
        assert worker.stats()["consumed"] == consumed  # nothing fetched: still paused
    assert consumed < len(demand)
    assert rss_max - rss_before < MEMORY_BOUND_MIB * 1024, (rss_before, rss_max)
    fault.unlink()
    worker.wait_consumed(len(demand), timeout=180)
    deadline = time.monotonic() + 30
    while readyz(worker.web_port)[0] != 200 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert worker.stop() == 0
    sizes = (300, 3600, 86400)
    assert_matches_oracle(stored_cells(worker, sizes), oracle_cells(history), sizes)
    assert_stored_ledger(worker.query, Counter(e.topic for e in demand))
