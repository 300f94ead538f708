"""Issue 18: checkpoints of another log. A worker that restores a checkpoint checks that the
record it ended on is still at its offset; when the log is not the one the checkpoint came
from (another cluster, a recreated topic, a log that ends before the checkpoint), that
partition stops with reason log_mismatch, visibly, and the others go on. `c2m reset` is the
way out: the partition is then read from the start of the new log, exactly."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from streams.kafka.embedded import EmbeddedBroker
from streams.kafka.topics import ensure_topics
from streams.sim.model import generate_history
from tests import oracle
from tests.helpers.processes import Worker, produce, readyz

pytestmark = [pytest.mark.integration, pytest.mark.slow]

START_MS = 1_794_398_400_000


def _events(seed: int, hours: float, topics: set[str]) -> tuple[list[Any], list[Any]]:
    history = generate_history(seed, START_MS, hours, orders_per_hour=300)
    products = [e for e in history if e.topic == "shop.products"]
    return products, [e for e in history if e.topic in topics]


def _messages(events: list[Any]) -> list[tuple[str, bytes, bytes]]:
    return [(e.topic, e.key.encode(), orjson.dumps(e.value)) for e in events]


def test_checkpoints_of_another_cluster_stop_their_partitions_until_reset(
    broker: Any, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    products, orders = _events(1, 1.0, {"shop.orders"})
    produce(broker.bootstrap, _messages(products + orders))
    first = Worker(broker.bootstrap, data).start()
    try:
        first.wait_consumed(len(orders))
        time.sleep(2)  # flushed and checkpointed
    finally:
        assert first.stop() == 0

    # the same data directory, another cluster: other orders (fewer), and page views
    with EmbeddedBroker(log_path=tmp_path / "other.log") as other:
        ensure_topics(other.bootstrap, 4)
        products2, demand2 = _events(2, 0.5, {"shop.orders", "shop.pageviews"})
        produce(other.bootstrap, _messages(products2 + demand2))
        views = [e for e in demand2 if e.topic == "shop.pageviews"]
        second = Worker(other.bootstrap, data).start()
        try:
            stats = second.wait_consumed(len(views), timeout=180)
            deadline = time.monotonic() + 30
            status, body = readyz(second.web_port)
            while len(body.get("stopped_partitions", [])) < 4 and time.monotonic() < deadline:
                time.sleep(0.5)
                status, body = readyz(second.web_port)
            stopped = body["stopped_partitions"]
            assert status == 503
            assert {(s["topic"], s["reason"]) for s in stopped} == {("shop.orders",
                                                                    "log_mismatch")}
            assert sorted(s["partition"] for s in stopped) == [0, 1, 2, 3]
            assert all("c2m reset" not in s["detail"] for s in stopped)  # detail: the cause
            # the page views (no checkpoint) went on; none of the new orders was taken
            stats = second.stats() or stats
            assert stats["consumed"] == sum(1 for _ in orders) + len(views)
            assert stats["stopped_partitions"] == stopped
            log = second.log_tail(10**6)
            assert "partition shop.orders[0] stopped at offset" in log
        finally:
            assert second.stop() == 0

        # the way out: reset the orders partitions (workers stopped), then start again
        env = {**os.environ, "C2M_DATA_DIR": str(data), "C2M_KAFKA_BOOTSTRAP": other.bootstrap,
               "C2M_TIMEZONE": oracle.MARKET_TZ}
        out = subprocess.run([sys.executable, "-m", "streams.cli", "reset", "--topic",
                              "shop.orders", "--yes"], env=env, capture_output=True, text=True,
                             timeout=120, check=False)
        assert out.returncode == 0, out.stderr[-3000:]
        assert "shop.orders[0]: deleted" in out.stdout and "serving rows recomputed" in out.stdout
        third = Worker(other.bootstrap, data).start()
        try:
            third.wait_consumed(len(demand2), timeout=180)
            time.sleep(2)
            assert not (readyz(third.web_port)[1]["stopped_partitions"])
        finally:
            assert third.stop() == 0
        want = oracle.demand([e.value for e in products2], [(e.topic, e.value) for e in demand2],
                             timezone=oracle.MARKET_TZ)
        rows = third.query("SELECT window_seconds, toUnixTimestamp(window_start), category, "
                           "color, size, price_band, region, units, pageviews "
                           "FROM c2m.demand_by_attribute")
        assert {tuple(r[:7]): (r[7], r[8]) for r in rows} == {
            k: (w["units"], w["pageviews"]) for k, w in want.items()}
