"""The worker's servers: loopback only by default, real Prometheus exposition, health."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.request
from typing import Any

import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.helpers.processes import listening, produce

pytestmark = pytest.mark.integration


def test_servers_bind_loopback_and_expose_metrics(broker: Any, worker_factory: Any) -> None:
    product = {
        "event_id": "p",
        "event_type": "product_upsert",
        "ts": 0,
        "shop_id": "s",
        "sku": "A",
        "factory_id": "F",
        "category": "袜子",
        "color": "奶白",
        "size": "M",
        "list_price": 12.0,
        "lead_time_days": 5,
        "moq": 100,
    }
    orders = [
        {
            "event_id": f"o{i}",
            "event_type": "order_placed",
            "ts": 1_794_398_400_000 + i,
            "shop_id": "s",
            "order_id": f"o{i}",
            "region": "浙江",
            "buyer_id": "b",
            "lines": [{"sku": "A", "qty": 1, "unit_price": 12.0}],
        }
        for i in range(50)
    ]
    produce(
        broker.bootstrap,
        [("shop.products", b"A", orjson.dumps(product))]
        + [("shop.orders", b"k", orjson.dumps(o)) for o in orders]
        + [("shop.orders", b"k", b"x")],
    )
    worker = worker_factory().start()
    worker.wait_consumed(51)
    metrics_port = int(worker.env["C2M_METRICS_PORT"])
    assert listening(worker.web_port) == {"127.0.0.1"}
    assert listening(metrics_port) == {"127.0.0.1"}

    with urllib.request.urlopen(f"http://127.0.0.1:{worker.web_port}/healthz", timeout=5) as r:
        assert json.loads(r.read()) == {"status": "ok"}
    deadline = time.monotonic() + 30
    while True:  # the end-to-end latency is observed once the flush is committed
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as r:
            text = r.read().decode()
        samples = {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(text)
            for s in fam.samples
        }
        lag = {k[1] for k in samples if k[0] == "c2m_consumer_lag_records"}
        # flushed, and the lag asked of the broker (every C2M_LAG_INTERVAL_SECONDS)
        if samples.get(("c2m_end_to_end_latency_seconds_count", ()), 0) > 0 and any(
            dict(labels)["topic"] == "shop.orders" for labels in lag
        ):
            break
        assert time.monotonic() < deadline, text
        time.sleep(0.3)
    assert samples[("c2m_events_total", (("outcome", "consumed"), ("topic", "shop.orders")))] == 51
    assert samples[("c2m_events_total", (("outcome", "processed"), ("topic", "shop.orders")))] == 50
    assert (
        samples[("c2m_dead_letters_total", (("reason", "invalid_json"), ("topic", "shop.orders")))]
        == 1
    )
    assert samples[("c2m_catalog_products", ())] == 1
    # the records were produced just now: end-to-end latency is seconds, not hours
    e2e_sum = samples[("c2m_end_to_end_latency_seconds_sum", ())]
    assert 0 < e2e_sum / samples[("c2m_end_to_end_latency_seconds_count", ())] < 120
    assert samples[("c2m_sink_rows_total", (("table", "demand_state"),))] > 0
    assert samples[("c2m_sink_flush_seconds_count", ())] > 0
    assert samples[("c2m_dedup_ids", ())] == 50  # the 50 valid order ids
    assert samples[("c2m_live_cells", ())] > 0
    assert samples[("c2m_partitions_assigned", ())] == 12  # 3 demand topics x 4 partitions
    # lag values: tests/integration/test_consumer_lag.py (Tansu needs single-record batches)
    assert any(k[0] == "c2m_watermark_lag_seconds" for k in samples)
    assert samples[("c2m_build_info", (("app_id", "c2m-pulse"), ("version", "0.1.0")))] == 1
    # no label value comes from an event field
    assert "浙江" not in text and "袜子" not in text
    promtool = shutil.which("promtool")
    assert promtool or not os.environ.get("CI"), ".ci/run installs promtool (Debian prometheus)"
    if promtool:
        check = subprocess.run(
            [promtool, "check", "metrics"], input=text, text=True, capture_output=True, check=False
        )
        assert check.returncode == 0, check.stdout + check.stderr
    assert worker.stop() == 0
