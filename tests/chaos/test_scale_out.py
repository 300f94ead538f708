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

from tests.chaos.cluster import (
    Writer,
    assert_metrics_ledger_balanced,
    assert_stored_ledger,
    metric_value,
    metrics_text,
    wait_until,
)
from tests.integration.conftest import produce
from tests.integration.test_pipeline_oracle import (
    _actual,
    _expected,
    _history,
    _messages,
    assert_matches_oracle,
)
from tests.integration.test_servers import _listening

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_two_workers_one_killed_give_the_oracle_numbers(
    broker: Any, worker_factory: Any, tmp_path: Path
) -> None:
    history = _history(seed=23, hours=2, orders_per_hour=1200)
    demand = [e for e in history if e.topic != "shop.products"]
    produced = Counter(e.topic for e in demand)
    half = len(history) // 2

    writer = Writer(broker.bootstrap, tmp_path / "writer").start()
    workers = [worker_factory(**writer.sink_env()).start() for _ in range(2)]
    victim, survivor = workers
    first_half = sum(1 for e in history[:half] if e.topic != "shop.products")
    try:
        produce(broker.bootstrap, _messages(history[:half]))
        # both members hold partitions and make progress before one dies
        wait_until(
            "both workers consuming the first half",
            lambda: all((w.stats() or {}).get("consumed", 0) > 0 for w in workers)
            and sum((w.stats() or {}).get("consumed", 0) for w in workers) == first_half,
            120, writer, *workers,
        )
        # the writer's servers are loopback-only, like the worker's
        assert _listening(writer.web_port) == {"127.0.0.1"}
        assert _listening(int(writer.env["C2M_METRICS_PORT"])) == {"127.0.0.1"}
        before = victim.stats()["consumed"]
        # SIGKILL the victim while it consumes the second half
        rest = threading.Thread(
            target=produce, args=(broker.bootstrap, _messages(history[half:]))
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
    assert_matches_oracle(_actual(writer, sizes), _expected(history), sizes)
    assert_stored_ledger(writer.query, produced)
