"""Bytes per million event ids held by the dedup state: ``python -m bench.dedup_memory``."""

from __future__ import annotations

import argparse
import tracemalloc

from streams.core._lanes import IdSet
from streams.core.dedup import BUCKET_MS, Deduplicator


def measure(n: int, per_hour: int, compiled: bool) -> float:
    """Traced bytes per id for ``n`` ids spread over hour buckets of ``per_hour`` ids, in
    the compiled dedup state (what the engine uses) or the pure-Python reference."""
    ids = [f"shop-7-{i:012d}" for i in range(n)]  # built before tracing starts
    tracemalloc.start()
    horizon = 48 * 3_600_000
    d = IdSet(horizon_ms=horizon, bucket_ms=BUCKET_MS) if compiled else Deduplicator(horizon)
    for i, event_id in enumerate(ids):
        d.first_time(event_id, (i // per_hour) * 3_600_000)
    d.cut()  # as in a flush
    current, _peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return current / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--ids", type=int, default=1_000_000)
    args = parser.parse_args()
    for compiled in (True, False):
        for per_hour in (10_000, 100_000, 1_000_000):
            per_id = measure(args.ids, per_hour, compiled)
            print(f"{'IdSet (compiled)' if compiled else 'Deduplicator (Python)'}: {args.ids} "
                  f"ids, {per_hour}/hour bucket: {per_id:.1f} bytes/id = "
                  f"{per_id * 1_000_000 / 2**20:.1f} MiB per million ids")


if __name__ == "__main__":
    main()
