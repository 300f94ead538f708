"""Simulated demand in a fresh chDB engine, then queries: run as a subprocess (chDB allows
one engine path per process).

    python -m tests.integration.dashboard_data ENGINE_DIR QUERIES.json

Builds ``HOURS`` hours of simulated shop traffic from ``START_MS`` through the real engine
and the real store (the same rows a worker writes), plus a few events beyond the
correction horizon (late), then runs every query of QUERIES.json (a JSON list of SQL
strings) and prints a JSON list of results (rows as lists).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from bench.records import Keyed
from streams.clickhouse import market
from streams.clickhouse.client import connect
from streams.clickhouse.migrations import migrate
from streams.clickhouse.store import DemandStore
from streams.core.catalog import Catalog
from streams.core.engine import DemandEngine, LateEvent, Record
from streams.core.pricebands import PriceBands
from streams.settings import Settings
from streams.sim.model import generate_history
from tests.helpers.engine import process

START_MS = 1_794_398_400_000  # 2026-11-11 12:00 UTC (a whole hour: windows align)
HOURS = 3
SEED = 7
PARTITIONS = 4


def build(engine_dir: Path) -> Any:
    settings = Settings(data_dir=engine_dir)
    client = connect(settings)
    migrate(client, "c2m")
    store = DemandStore(client, "c2m")
    store.record_settings(settings.view_settings())
    engine = DemandEngine(settings.engine_config(), Catalog(PriceBands(settings.price_band_edges)))
    record = Keyed(PARTITIONS)

    events = generate_history(SEED, START_MS, HOURS, orders_per_hour=400)
    demand: list[Record] = []
    for ev in events:
        rec = record(ev.topic, ev.key, ev.value, ev.ts_ms)
        if ev.topic == "shop.products":
            assert engine.apply_product(rec) is None
        else:
            demand.append(rec)
    # a few page views that arrive days late (beyond the 48 h correction horizon)
    view = next(ev for ev in events if ev.topic == "shop.pageviews")
    end_ms = START_MS + HOURS * 3_600_000
    for i in range(3):
        value = {**view.value, "event_id": f"late-{i}", "ts": START_MS - 3 * 86_400_000}
        demand.append(record(view.topic, view.key, value, end_ms))
    late: list[LateEvent] = []
    for i in range(0, len(demand), 5000):
        outcome = process(engine, demand[i : i + 5000])
        late.extend(outcome.late)
        batch = engine.flush_batch()
        store.write(batch, late, engine.config.allowed_lateness_ms)
        engine.flushed(batch)
        late = []
    # what a worker's periodic market refresh does (daily windows, rolling horizons)
    market.refresh_periodic(client, "c2m")
    _write_alerts(client)
    return client


def _write_alerts(client: Any) -> None:
    """Alerts as the worker stores them, from the signal-quality scenario (three days of
    history are needed before the rules can fire; three hours of demand are not enough)."""
    from streams.alerting import to_message
    from streams.clickhouse.alerts import AlertStore
    from streams.core.alerting.evaluator import AlertEvaluator, PreparedInputs
    from tests.signals.quality import DAY_MS, HOUR_MS, scenario_events
    from tests.signals.quality import START_MS as SCENARIO_START
    from tests.signals.reference import reference_inputs

    events, _ = scenario_events(7, 3.0, SCENARIO_START + 2 * DAY_MS + 2 * HOUR_MS)
    prep = PreparedInputs(reference_inputs(events))
    assert prep.first_hour is not None
    evaluator = AlertEvaluator()
    store = AlertStore(client, "c2m")
    last = SCENARIO_START // 1000 + 3 * 86_400 - 3600
    for hour in range(prep.first_hour, last, 3600):
        changes = evaluator.evaluate(hour, prep)
        store.write([(a, to_message(a).model_dump_json()) for a in changes], hour)


def main() -> None:
    client = build(Path(sys.argv[1]))
    queries = json.loads(Path(sys.argv[2]).read_text())
    out = [[list(r) for r in client.query(sql).result_rows] for sql in queries]
    print(json.dumps(out, ensure_ascii=False, default=str))


if __name__ == "__main__":
    main()
