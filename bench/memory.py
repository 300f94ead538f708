"""``python -m bench.memory``: worker RSS against live cells, dedup ids and events.

Each measurement runs the real engine (fast decoder, hot-cell cache, flush + eviction as
the pipeline does it, without ClickHouse) in a fresh child process and reads VmRSS:

1. live cells: page views over S SKUs x R regions within one 5-minute window create
   3 x S x R cells (5 min, 1 h, 1 day); RSS after the flush, against the cell count
   (each event also leaves one dedup id: reported alongside);
2. events: a stream with a fixed number of SKUs and regions whose event time runs for
   20 days (beyond the 48 h dedup/correction horizon and the 7-day live retention), RSS
   after every tenth of it: state, and so RSS, stops growing with the number of events.
"""

from __future__ import annotations

import argparse
import gc
import subprocess
import sys
from typing import Any

from streams.core.engine import DemandEngine, Record, runs_of

T0 = 1_793_491_200_000
DAY_MS = 86_400_000


def rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")  # pragma: no cover


def _engine(skus: int) -> DemandEngine:
    eng = DemandEngine()
    for i in range(skus):
        value = (
            f'{{"event_id":"p{i}","event_type":"product_upsert","ts":0,"shop_id":"s",'
            f'"sku":"K{i}","factory_id":"F1","category":"c{i % 97}","color":"col{i // 97 % 89}",'
            f'"size":"s{i // 8633}","list_price":{10 + i % 300}.5,"lead_time_days":7,"moq":10}}'
        ).encode()
        assert eng.apply_product(Record("shop.products", 0, i, None, None, value)) is None  # noqa: S101
    return eng


def _pageview(i: int, sku: int, region: int, ts: int) -> bytes:
    return (
        f'{{"event_id":"e{i}","ts":{ts},"shop_id":"s","event_type":"page_view",'
        f'"sku":"K{sku}","visitor_id":"v{i % 5000}","region":"r{region}"}}'
    ).encode()


def _flush(eng: DemandEngine) -> None:
    eng.flushed(eng.flush_batch())


def cells(skus: int, regions: int) -> dict[str, Any]:
    eng = _engine(skus)
    gc.collect()
    before = rss_mib()
    i = 0
    for p in range(4):
        recs = []
        for s in range(p, skus, 4):
            for r in range(regions):
                recs.append(Record("shop.pageviews", p, len(recs), T0 + 10_000,
                                   None, _pageview(i, s, r, T0 + i % 200_000)))
                i += 1
        for k in range(0, len(recs), 10_000):
            eng.process_runs(runs_of(recs[k:k + 10_000]))
        _flush(eng)
    gc.collect()
    n_cells = sum(len(st.cells) for st in eng.states.values())
    ids = sum(len(st.dedup) for st in eng.states.values())
    return {"cells": n_cells, "ids": ids, "rss_mib": rss_mib(), "state_mib": rss_mib() - before}


def events(total: int) -> list[dict[str, Any]]:
    skus, regions, span = 2000, 10, 20 * DAY_MS
    eng = _engine(skus)
    out = []
    step = total // 10
    for k in range(0, total, 10_000):
        recs = []
        for i in range(k, min(k + 10_000, total)):
            ts = T0 + span * i // total
            recs.append(Record("shop.pageviews", i % 4, i // 4, ts + 1000, None,
                               _pageview(i, i * 7919 % skus, i % regions, ts)))
        recs.sort(key=lambda r: r.partition)
        eng.process_runs(runs_of(recs))
        _flush(eng)
        if (k + 10_000) % step == 0:
            gc.collect()
            out.append({
                "events": k + 10_000,
                "cells": sum(len(st.cells) for st in eng.states.values()),
                "ids": sum(len(st.dedup) for st in eng.states.values()),
                "rss_mib": rss_mib(),
            })
    return out


def _child(kind: str, arg: int) -> str:
    code = (f"import json, bench.memory as m; "
            f"print(json.dumps(m.{kind}({arg}{', 10' if kind == 'cells' else ''})))")
    return subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                          text=True).stdout


def main() -> None:
    import json

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes (CI smoke run)")
    args = parser.parse_args()
    sizes = [34, 334] if args.quick else [34, 334, 3334, 33_334]  # x 10 regions x 3 windows
    print("memory: RSS against live cells (page views, 10 regions, 3 window sizes)")
    print(f"  {'live cells':>10} {'dedup ids':>10} {'RSS MiB':>9} {'state MiB':>10}")
    for s in sizes:
        r = json.loads(_child("cells", s))
        print(f"  {r['cells']:>10,} {r['ids']:>10,} {r['rss_mib']:>9.1f} {r['state_mib']:>10.1f}")
    total = 100_000 if args.quick else 2_000_000
    print(f"memory: RSS against events ({total:,} page views over 20 days of event time, "
          "2,000 SKUs x 10 regions)")
    print(f"  {'events':>10} {'live cells':>10} {'dedup ids':>10} {'RSS MiB':>9}")
    for r in json.loads(_child("events", total)):
        print(f"  {r['events']:>10,} {r['cells']:>10,} {r['ids']:>10,} {r['rss_mib']:>9.1f}")


if __name__ == "__main__":
    main()
