"""End to end: simulator -> real broker -> `c2m worker` -> chDB, against the plain-Python oracle."""

from __future__ import annotations

import signal
from collections import Counter
from typing import Any

import pytest

from tests.helpers.processes import produce
from tests.helpers.sim_run import (
    assert_matches_oracle,
    oracle_cells,
    sim_history,
    sim_messages,
    stored_cells,
)

pytestmark = pytest.mark.integration

@pytest.mark.slow
def test_demand_by_attribute_equals_oracle(broker: Any, worker_factory: Any) -> None:
    history = sim_history(seed=11, hours=3.5, orders_per_hour=3500)
    kinds = Counter((e.topic, e.value["event_type"]) for e in history)
    assert kinds[("shop.orders", "order_placed")] >= 10_000
    formats = Counter(type(e.value["ts"]).__name__ for e in history)
    assert formats["int"] and formats["str"]
    produce(broker.bootstrap, sim_messages(history))

    worker = worker_factory().start()
    demand_events = sum(1 for e in history if e.topic != "shop.products")
    stats = worker.wait_consumed(demand_events, timeout=600)
    assert stats["dead_lettered"] == 0 and stats["late"] == 0
    assert worker.stop() == 0

    sizes = (300, 3600)
    assert_matches_oracle(stored_cells(worker, sizes), oracle_cells(history), sizes)
    # one row per (window, cell): the view needs no FINAL and no GROUP BY from the caller
    dupes = worker.query(
        "SELECT count() FROM (SELECT window_start, window_seconds, category, color, size, "
        "price_band, region, count() AS n FROM c2m.demand_by_attribute GROUP BY ALL "
        "HAVING n > 1)"
    )
    assert dupes == [(0,)]


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["stop", "kill"])
def test_restart_mid_stream_gives_the_same_numbers(
    broker: Any, worker_factory: Any, tmp_path: Any, sig: int
) -> None:
    history = sim_history(seed=5, hours=2, orders_per_hour=1500)
    demand_events = sum(1 for e in history if e.topic != "shop.products")
    produce(broker.bootstrap, sim_messages(history))

    data_dir = tmp_path / "restart"
    first = worker_factory(data_dir).start()
    first.wait_consumed(demand_events // 3)  # still consuming when it is stopped
    first.stop(sig)

    # duplicates of events counted before the stop arrive after it (producer retries)
    retries = [e for e in history if e.topic == "shop.orders"][:200]
    produce(broker.bootstrap, sim_messages(retries))
    second = worker_factory(data_dir).start()
    stats = second.wait_consumed(demand_events + len(retries))
    assert stats["duplicates"] >= len(retries)
    assert second.stop() == 0

    sizes = (300, 3600, 86400)
    assert_matches_oracle(stored_cells(second, sizes), oracle_cells(history), sizes)


def test_sigterm_writes_and_commits_what_was_consumed(broker: Any, worker_factory: Any) -> None:
    """The final flush on SIGTERM: with every flush held back (an hour's interval, an
    eager bound above the input), nothing is written while consuming; the stop writes it
    all, and the restart has nothing to redo."""
    history = sim_history(seed=7, hours=0.5, orders_per_hour=600)
    demand_events = sum(1 for e in history if e.topic != "shop.products")
    produce(broker.bootstrap, sim_messages(history))
    held = {"C2M_FLUSH_INTERVAL_SECONDS": "3600",
            "C2M_FLUSH_EAGER_EVENTS": str(10 * demand_events),
            "C2M_FLUSH_MAX_PENDING_EVENTS": str(10 * demand_events)}
    first = worker_factory(**held).start()
    stats = first.wait_consumed(demand_events)
    assert stats["flushes"] == 0  # nothing written before the stop
    assert first.stop() == 0
    stored = first.query("SELECT sum(consumed) FROM c2m.source_progress")
    assert stored == [(demand_events,)]

    again = worker_factory(first.data_dir, **held).start()
    assert again.wait_consumed(demand_events)["consumed"] == demand_events  # restored
    assert (again.stats() or {})["flushes"] == 0  # nothing new to write
    assert again.stop() == 0
