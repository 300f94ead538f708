"""Issue 18: ClickHouse errors that are not outages stop the worker at once with one line
naming the table (exit code 5); an overloaded server (TOO_MANY_PARTS) is an outage: paused,
retried, caught up exactly. Both through the fault-injecting client on a real worker."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from streams.errors import EXIT_REFUSED
from streams.sim.model import generate_history
from tests import oracle
from tests.helpers.processes import produce

pytestmark = pytest.mark.integration

START_MS = 1_794_398_400_000


def _history() -> tuple[list[Any], list[tuple[str, bytes, bytes]]]:
    events = generate_history(3, START_MS, 0.5, orders_per_hour=300)
    return events, [(e.topic, e.key.encode(), orjson.dumps(e.value)) for e in events]


def test_a_refused_write_stops_the_worker_with_one_line(
    broker: Any, worker_factory: Any, tmp_path: Path
) -> None:
    fault = tmp_path / "fault"
    worker = worker_factory(C2M_CLICKHOUSE_FAULT_FILE=str(fault)).start()
    worker.wait_consumed(0)  # migrated and running
    fault.write_text("refuse")
    _, messages = _history()
    produce(broker.bootstrap, messages)
    assert worker.proc is not None
    deadline = time.monotonic() + 60
    while worker.proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert worker.proc.returncode == EXIT_REFUSED, worker.log_tail()
    log = worker.log_tail(10**6)
    stops = [ln for ln in log.splitlines() if "stopping:" in ln]
    assert len(stops) == 1, log[-3000:]
    assert "ClickHouse refused the write of c2m." in stops[0]
    assert "NO_SUCH_COLUMN_IN_TABLE (16)" in stops[0]
    assert "will retry" not in log and "Traceback" not in log


def test_an_overloaded_server_is_an_outage_retried_until_it_recovers(
    broker: Any, worker_factory: Any, tmp_path: Path
) -> None:
    fault = tmp_path / "fault"
    worker = worker_factory(C2M_CLICKHOUSE_FAULT_FILE=str(fault)).start()
    worker.wait_consumed(0)
    fault.write_text("overload")
    events, messages = _history()
    produce(broker.bootstrap, messages)
    deadline = time.monotonic() + 30
    while "TOO_MANY_PARTS" not in worker.log_tail() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert "retry" in worker.log_tail() and "TOO_MANY_PARTS" in worker.log_tail()
    time.sleep(2)
    assert worker.proc is not None and worker.proc.poll() is None  # still running, paused
    fault.unlink()
    demand = [e for e in events if e.topic != "shop.products"]
    worker.wait_consumed(len(demand), timeout=120)
    time.sleep(3)  # the backlog is flushed
    assert worker.stop() == 0
    want = oracle.demand([e.value for e in events if e.topic == "shop.products"],
                         [(e.topic, e.value) for e in demand], timezone=oracle.MARKET_TZ)
    rows = worker.query("SELECT window_seconds, toUnixTimestamp(window_start), category, "
                        "color, size, price_band, region, units FROM c2m.demand_by_attribute")
    assert {tuple(r[:7]): r[7] for r in rows} == {k: w["units"] for k, w in want.items()}
