"""Bytes per million event ids held by the dedup state: ``python -m bench.dedup_memory``."""

from __future__ import annotations

import argparse
import tracemalloc

from streams.core.dedup import Deduplicator


def measure(n: int, per_hour: int) -> float:
    """Traced bytes per id for ``n`` ids spread over hour buckets of ``per_hour`` ids."""
    ids = [f"shop-7-{i:012d}" for i in range(n)]  # built before tracing starts
    tracemalloc.start()
    d = Deduplicator(horizon_ms=48 * 3_600_000)
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
    for per_hour in (10_000, 100_000, 1_000_000):
        per_id = measure(args.ids, per_hour)
        print(f"{args.ids} ids, {per_hour}/hour bucket: {per_id:.1f} bytes/id = "
              f"{per_id * 1_000_000 / 2**20:.1f} MiB per million ids")


if __name__ == "__main__":
    main()
