"""Memory held by unflushed events while ClickHouse is down: ``python -m bench.outage_memory``.

During an outage the worker pauses after the first failed flush; what it holds beyond its
live state is what it consumed since the last good flush (at most ``max_pending_events`` +
one batch). This measures the traced bytes per unflushed event of the simulator's mix
(cells, visitor cell entries, dedup ids; no flush), the number behind the bound in
docs/ARCHITECTURE.md ("Memory during an outage").
"""

from __future__ import annotations

import argparse
import gc
import tracemalloc

import orjson

from streams.core.catalog import Catalog
from streams.core.engine import DemandEngine, Record, runs_of
from streams.core.pricebands import PriceBands
from streams.sim.model import generate_history

START_MS = 1_793_491_200_000  # 2026-11-01T00:00:00Z


def measure(n: int) -> tuple[int, float]:
    history = generate_history(3, START_MS, 8, orders_per_hour=6000)
    engine = DemandEngine(catalog=Catalog(PriceBands()))
    for i, e in enumerate(e for e in history if e.topic == "shop.products"):
        engine.apply_product(Record(e.topic, 0, i, None, None, orjson.dumps(e.value)))
    demand = [e for e in history if e.topic != "shop.products"][: n + 10_000]
    records = [
        Record(e.topic, 0, i, START_MS + 86_400_000, None, orjson.dumps(e.value))
        for i, e in enumerate(demand)
    ]
    engine.process_runs(runs_of(records[:10_000]))  # warm state, flushed as before an outage
    engine.flushed(engine.flush_batch())
    gc.collect()
    tracemalloc.start()
    engine.process_runs(runs_of(records[10_000:]))  # consumed, never flushed
    gc.collect()
    current, _peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    held = len(records) - 10_000
    return held, current / held


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=200_000)
    args = parser.parse_args()
    held, per_event = measure(args.events)
    print(f"{held} unflushed events: {per_event:.0f} bytes/event = "
          f"{held * per_event / 2**20:.1f} MiB")


if __name__ == "__main__":
    main()
