"""SIGKILL in the middle of a flush (issue 5, scenario a). The fault file in ``stall`` mode
holds a flush at its most dangerous point and the test kills the process there:

- direct write: the flush's rows are in ClickHouse, its checkpoint is not (the insert of
  ``checkpoints`` blocks); the restarted worker restores the older checkpoint;
- Kafka sink: the writer is killed with rows written and the checkpoint pending, and the
  worker is killed after ``c2m.sink`` acknowledged its flush but before the offset commit;
  the restarted worker, started before the writer, waits in its restore until the
  restarted writer holds its checkpoint.

Both end with ClickHouse equal to the oracle and balanced ledgers."""

from __future__ import annotations

import signal
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.chaos.cluster import (
    Writer,
    assert_metrics_ledger_balanced,
    assert_stored_ledger,
    consumed,
    rows_beyond_checkpoint,
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
SIZES = (300, 3600, 86400)


def _arm(fault: Path, flushes_first: int = 0) -> None:
    """Stall the flush after ``flushes_first`` complete ones (armed before the start, so
    the stall point does not depend on how fast the process consumes)."""
    fault.write_text(f"stall {flushes_first}")


def _kill_when_stalled(proc: Any, fault: Path) -> int:
    """SIGKILL ``proc`` inside its stalled flush; returns what it had consumed by then."""
    wait_until("the flush to stall", lambda: Path(f"{fault}.stalled").exists(), 120, proc)
    at_kill = consumed(proc)
    proc.stop(signal.SIGKILL)
    fault.unlink()
    return at_kill


def _paced(events: int, flushes: int) -> dict[str, str]:
    """A worker that flushes about every ``events // flushes`` events and never on time
    alone, in small batches: its n-th flush covers about n / ``flushes`` of the input."""
    return {
        "C2M_FLUSH_MAX_PENDING_EVENTS": str(max(events // flushes, 1)),
        "C2M_FLUSH_INTERVAL_SECONDS": "3600",
        "C2M_BATCH_MAX_EVENTS": "500",
    }


def test_worker_killed_mid_flush_restarts_exactly(
    broker: Any, worker_factory: Any, tmp_path: Path
) -> None:
    history = sim_history(seed=5, hours=2, orders_per_hour=1500)
    demand = [e for e in history if e.topic != "shop.products"]
    produce(broker.bootstrap, sim_messages(history))
    fault = tmp_path / "fault"
    data = tmp_path / "worker"

    # one flush (about a third of the input) is checkpointed, the second one stalls
    _arm(fault, flushes_first=1)
    first = worker_factory(data, C2M_CLICKHOUSE_FAULT_FILE=str(fault),
                           **_paced(len(demand), 3)).start()
    assert 0 < _kill_when_stalled(first, fault) < len(demand)
    assert rows_beyond_checkpoint(first) > 0  # killed between the rows and the checkpoint

    second = worker_factory(data).start()
    wait_until("everything consumed", lambda: consumed(second) == len(demand), 180, second)
    assert_metrics_ledger_balanced(second)
    assert second.stop() == 0
    assert_matches_oracle(stored_cells(second, SIZES), oracle_cells(history), SIZES)
    assert_stored_ledger(second.query, Counter(e.topic for e in demand))


def test_writer_and_worker_killed_mid_flush_on_the_kafka_sink(
    broker: Any, worker_factory: Any, tmp_path: Path
) -> None:
    history = sim_history(seed=7, hours=2, orders_per_hour=1500)
    demand = [e for e in history if e.topic != "shop.products"]
    produce(broker.bootstrap, sim_messages(history))
    writer_fault, worker_fault = tmp_path / "writer-fault", tmp_path / "worker-fault"

    # the writer: rows of its first write are in ClickHouse, the checkpoints are not
    _arm(writer_fault)
    # the worker: two flushes acknowledged on c2m.sink and committed (the writer holds
    # neither checkpoint yet), the third acknowledged and never committed
    _arm(worker_fault, flushes_first=2)
    writer = Writer(broker.bootstrap, tmp_path / "writer",
                    C2M_CLICKHOUSE_FAULT_FILE=str(writer_fault)).start()
    first = worker_factory(C2M_CLICKHOUSE_FAULT_FILE=str(worker_fault),
                           **writer.sink_env(), **_paced(len(demand), 4)).start()
    assert 0 < _kill_when_stalled(first, worker_fault) < len(demand)
    _kill_when_stalled(writer, writer_fault)
    assert rows_beyond_checkpoint(writer) > 0

    # the new worker comes up first: its restore must wait for the writer (read-your-writes)
    second = worker_factory(**writer.sink_env()).start()
    wait_until("the restore to wait for the writer",
               lambda: "waits: writer unreachable" in second.log_tail(20_000), 60, second)
    writer.start()
    wait_until("everything consumed", lambda: consumed(second) == len(demand), 180,
               second, writer)
    assert_metrics_ledger_balanced(second)
    assert second.stop() == 0
    wait_until("the writer to hold the final checkpoints",
               lambda: consumed(writer) == len(demand), 60, writer)
    assert writer.stop() == 0
    assert_matches_oracle(stored_cells(writer, SIZES), oracle_cells(history), SIZES)
    assert_stored_ledger(writer.query, Counter(e.topic for e in demand))
