"""Scale-out (issue 5, scenarios 3 and b): two workers in one consumer group flush through
``c2m.sink`` to the single writer that owns chDB; one worker is SIGKILLed mid-stream, the
group rebalances, the survivor restores the dead worker's partitions from the writer, and
ClickHouse equals the oracle exactly with a balanced ledger."""

from __future__ import annotations

import signal
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from streams.errors import EXIT_REFUSED
from tests.chaos.cluster import (
    Writer,
    assert_metrics_ledger_balanced,
    assert_stored_ledger,
    metric_value,
    metrics_text,
    wait_until,
)
from tests.helpers.processes import listening, produce, readyz
from tests.helpers.sim_run import (
    assert_matches_oracle,
    oracle_cells,
    sim_history,
    sim_messages,
    stored_cells,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_two_workers_one_killed_give_the_oracle_numbers(
    broker: Any, worker_factory: Any, tmp_path: Path
) -> None:
    history = sim_history(seed=23, hours=2, orders_per_hour=1200)
    demand = [e for e in history if e.topic != "shop.products"]
    produced = Counter(e.topic for e in demand)
    half = len(history) // 2

    writer = Writer(broker.bootstrap, tmp_path / "writer").start()
    workers = [worker_factory(**writer.sink_env()).start() for _ in range(2)]
    victim, survivor = workers
    first_half = sum(1 for e in history[:half] if e.topic != "shop.products")
    try:
        produce(broker.bootstrap, sim_messages(history[:half]))
        # both members hold partitions and make progress before one dies
        wait_until(
            "both workers consuming the first half",
            lambda: all((w.stats() or {}).get("consumed", 0) > 0 for w in workers)
            and sum((w.stats() or {}).get("consumed", 0) for w in workers) == first_half,
            120, writer, *workers,
        )
        # the writer's servers are loopback-only, like the worker's
        assert listening(writer.web_port) == {"127.0.0.1"}
        assert listening(int(writer.env["C2M_METRICS_PORT"])) == {"127.0.0.1"}
        before = victim.stats()["consumed"]
        # SIGKILL the victim while it consumes the second half
        rest = threading.Thread(
            target=produce, args=(broker.bootstrap, sim_messages(history[half:]))
        )
        rest.start()
        wait_until(
            "the victim consuming the second half",
            lambda: (victim.stats() or {}).get("consumed", 0) > before + 500, 60, victim,
        )
        victim.stop(signal.SIGKILL)
        rest.join()

        # the survivor takes the victim's partitions over (restored from the writer)
        wait_until(
            "the survivor to hold every partition and consume everything",
            lambda: (survivor.stats() or {}).get("consumed") == len(demand),
            90, writer, survivor,
        )
        rebalances = metric_value(metrics_text(survivor), "c2m_rebalances_total")
        assert rebalances >= 2  # joined, then took over the victim's partitions
        assert_metrics_ledger_balanced(survivor)
        assert survivor.stop() == 0
        wait_until(
            "the writer to hold the final checkpoints",
            lambda: (writer.stats() or {}).get("consumed") == len(demand), 60, writer,
        )
        assert writer.stop() == 0
    finally:
        for p in (writer, *workers):
            if p.proc is not None and p.proc.poll() is None:
                p.proc.kill()

    sizes = (300, 3600, 86400)
    assert_matches_oracle(stored_cells(writer, sizes), oracle_cells(history), sizes)
    assert_stored_ledger(writer.query, produced)


def test_writer_clickhouse_outage_is_caught_up_exactly(
    broker: Any, worker_factory: Any, tmp_path: Path
) -> None:
    """The writer's ClickHouse fails mid-stream: the writer pauses and reports 503, the
    worker keeps consuming and flushing into c2m.sink (Kafka holds the backlog); then the
    writer catches up exactly."""
    history = sim_history(seed=29, hours=1, orders_per_hour=1200)
    demand = [e for e in history if e.topic != "shop.products"]
    half = len(history) // 2
    fault = tmp_path / "writer-fault"
    writer = Writer(broker.bootstrap, tmp_path / "writer",
                    C2M_CLICKHOUSE_FAULT_FILE=str(fault)).start()
    worker = worker_factory(**writer.sink_env()).start()
    produce(broker.bootstrap, sim_messages(history[:half]))
    first_half = sum(1 for e in history[:half] if e.topic != "shop.products")
    wait_until("the first half written",
               lambda: (writer.stats() or {}).get("consumed") == first_half, 120, writer, worker)

    fault.touch()  # the writer's ClickHouse goes away
    produce(broker.bootstrap, sim_messages(history[half:]))
    # the worker does not need ClickHouse to go on: it consumes and flushes everything
    wait_until("the worker to consume everything",
               lambda: (worker.stats() or {}).get("consumed") == len(demand), 120,
               writer, worker)
    wait_until("the writer to report the outage",
               lambda: readyz(writer.web_port) == (503, {"sink_healthy": False, "paused": True}),
               30, writer)

    fault.unlink()
    wait_until("the writer to catch up",
               lambda: (writer.stats() or {}).get("consumed") == len(demand), 90, writer)
    assert readyz(writer.web_port)[0] == 200
    assert_metrics_ledger_balanced(worker)
    assert worker.stop() == 0 and writer.stop() == 0
    sizes = (300, 3600, 86400)
    assert_matches_oracle(stored_cells(writer, sizes), oracle_cells(history), sizes)
    assert_stored_ledger(writer.query, Counter(e.topic for e in demand))


def test_a_refused_write_stops_the_writer_and_loses_nothing(
    broker: Any, worker_factory: Any, tmp_path: Path
) -> None:
    """ClickHouse refuses the writer's write (a schema error, not an outage): the writer
    stops at once with one line and exit code 5, as a worker does, instead of retrying
    forever; nothing was committed, so a writer started once the cause is gone writes
    everything exactly."""
    history = sim_history(seed=31, hours=0.5, orders_per_hour=600)
    demand = [e for e in history if e.topic != "shop.products"]
    fault = tmp_path / "writer-fault"
    writer = Writer(broker.bootstrap, tmp_path / "writer",
                    C2M_CLICKHOUSE_FAULT_FILE=str(fault)).start()
    worker = worker_factory(**writer.sink_env()).start()
    wait_until("the writer running", lambda: writer.stats() is not None, 60, writer)
    fault.write_text("refuse")
    produce(broker.bootstrap, sim_messages(history))
    wait_until("the worker to consume everything",
               lambda: (worker.stats() or {}).get("consumed") == len(demand), 120, worker)
    assert writer.proc is not None
    wait_until("the writer to stop", lambda: writer.proc.poll() is not None, 60)
    assert writer.proc.returncode == EXIT_REFUSED, writer.log_tail()
    log = writer.log_tail(10**6)
    stops = [ln for ln in log.splitlines() if "stopping:" in ln]
    assert len(stops) == 1 and "NO_SUCH_COLUMN_IN_TABLE (16)" in stops[0], log[-3000:]
    assert "will retry" not in log and "Traceback" not in log

    fault.unlink()
    writer.start()
    wait_until("the restarted writer to write everything",
               lambda: (writer.stats() or {}).get("consumed") == len(demand), 120, writer)
    assert worker.stop() == 0 and writer.stop() == 0
    sizes = (300, 3600, 86400)
    assert_matches_oracle(stored_cells(writer, sizes), oracle_cells(history), sizes)
    assert_stored_ledger(writer.query, Counter(e.topic for e in demand))
