"""ClickHouse unavailable for over a minute: the worker pauses, stays bounded, reports not
ready, and catches up without loss when ClickHouse returns (issue 5, scenario c)."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import produce
from tests.integration.test_pipeline_oracle import (
    _actual,
    _expected,
    _history,
    _messages,
    assert_matches_oracle,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _readyz(port: int) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_clickhouse_outage_pauses_and_catches_up_exactly(
    broker: Any, worker_factory: Any, tmp_path: Path
) -> None:
    history = _history(seed=31, hours=2, orders_per_hour=1200)
    demand = [e for e in history if e.topic != "shop.products"]
    half = len(history) // 2
    fault = tmp_path / "clickhouse-down"
    worker = worker_factory(C2M_CLICKHOUSE_FAULT_FILE=str(fault)).start()
    produce(broker.bootstrap, _messages(history[:half]))
    worker.wait_consumed(sum(1 for e in history[:half] if e.topic != "shop.products"))
    assert _readyz(worker.web_port)[0] == 200

    fault.touch()  # ClickHouse goes away
    produce(broker.bootstrap, _messages(history[half:]))
    time.sleep(10)  # the next flush fails and the consumer pauses
    status, body = _readyz(worker.web_port)
    assert status == 503 and body["sink_healthy"] is False and body["paused"] is True
    consumed_paused = worker.stats()["consumed"]
    rss_paused = _rss_kib(worker.proc.pid)
    time.sleep(55)  # over a minute down in all
    assert worker.stats()["consumed"] == consumed_paused  # nothing fetched while paused
    assert consumed_paused < len(demand)
    assert _rss_kib(worker.proc.pid) - rss_paused < 100 * 1024  # memory stays bounded

    fault.unlink()  # ClickHouse is back
    worker.wait_consumed(len(demand))
    deadline = time.monotonic() + 30
    while _readyz(worker.web_port)[0] != 200 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert _readyz(worker.web_port)[0] == 200
    assert worker.stop() == 0

    sizes = (300, 3600, 86400)
    assert_matches_oracle(_actual(worker, sizes), _expected(history), sizes)
    ledger = worker.query(
        "SELECT sum(consumed), sum(processed), sum(dead_lettered), sum(duplicates), sum(late) "
        "FROM c2m.source_progress"
    )[0]
    assert ledger[0] == len(demand) == sum(ledger[1:])
