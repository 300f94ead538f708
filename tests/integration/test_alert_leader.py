"""Two consuming workers in one group: only the owner of the leader partition
(shop.orders[0]) runs the alert rules, so factories get each alert once; when it leaves,
the worker that takes the partition over starts evaluating.

(Each worker here has its own chDB, the only way to run two on this machine; against a
ClickHouse server they would share it. What is tested is who evaluates.)"""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.helpers.processes import Worker, produce
from tests.helpers.sim_run import sim_history, sim_messages

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ENV = {"C2M_ALERT_INTERVAL_SECONDS": "0.5", "C2M_ALERT_IDLE_WALL_SECONDS": "2"}


def _wait(cond: Any, what: str, workers: list[Worker], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.5)
    raise AssertionError(f"{what}: {[w.stats() for w in workers]}\n{workers[0].log_tail()}")


def test_only_the_leader_partition_owner_evaluates_and_the_lead_moves(
    broker: Any, worker_factory: Any
) -> None:
    history = sim_history(seed=3, hours=3, orders_per_hour=300)
    produce(broker.bootstrap, sim_messages(history))
    demand = sum(1 for e in history if e.topic != "shop.products")
    a, b = worker_factory(**ENV).start(), worker_factory(**ENV).start()
    workers = [a, b]

    def stats() -> list[dict[str, Any]]:
        return [w.stats() or {} for w in workers]

    # both consumed their share of the partitions, and hours got evaluated somewhere
    _wait(lambda: sum(s.get("consumed", 0) for s in stats()) >= demand
          and any(s.get("alert_hours_evaluated", 0) > 0 for s in stats()),
          "consumption and a first evaluation", workers)
    time.sleep(3)  # several alert ticks on both
    now = stats()
    leaders = [i for i, s in enumerate(now) if s["alert_leader"]]
    assert len(leaders) == 1, now
    lead, other = workers[leaders[0]], workers[1 - leaders[0]]
    assert now[leaders[0]]["alert_hours_evaluated"] > 0
    assert now[1 - leaders[0]]["alert_hours_evaluated"] == 0  # never evaluated
    assert all(s["consumed"] > 0 for s in now)  # both really consume

    assert lead.stop() == 0  # the leader leaves: the group hands its partitions over
    workers = [other]
    _wait(lambda: (other.stats() or {}).get("alert_leader") is True
          and (other.stats() or {}).get("alert_hours_evaluated", 0) > 0,
          "the remaining worker takes the lead and evaluates", workers)
    assert other.stop() == 0
