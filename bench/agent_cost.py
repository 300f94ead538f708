"""``python -m bench.agent_cost``: what handing a record batch to the demand agent costs.

The demand consumer hands each fetched batch (the runs of one ``getmany``) to the Faust
agent ``c2m.demand`` over an in-memory channel and waits for it to be applied
(``streams.app.attach_demand_agent``). This times that round trip with a pipeline that
does nothing, against calling the pipeline directly, in one process (the same event loop
the worker has), and converts it to a share of the worker's time per event at the batch
sizes the worker sees. Not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from typing import Any

import faust

from streams.app import attach_demand_agent


class _Nothing:
    async def handle_runs(self, runs: Any, oldest_ts_ms: int | None = None) -> None:
        return None


async def _measure(batches: int, repeats: int) -> tuple[list[float], list[float]]:
    app = faust.App("c2m-bench-agent", broker="kafka://127.0.0.1:9", store="memory://")
    pipeline = _Nothing()
    apply = attach_demand_agent(app, pipeline)  # type: ignore[arg-type]
    await app.agents.start()
    runs: Any = [("shop.pageviews", 0, [])]
    direct, agent = [], []
    try:
        for _ in range(repeats):
            t = time.perf_counter()
            for _ in range(batches):
                await pipeline.handle_runs(runs, 0)
            direct.append((time.perf_counter() - t) / batches)
            t = time.perf_counter()
            for _ in range(batches):
                await apply(runs, 0)
            agent.append((time.perf_counter() - t) / batches)
    finally:
        await app.agents.stop()
    return direct, agent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--events-per-batch", type=int, nargs="*",
                        default=[500, 2_000, 10_000],
                        help="batch sizes to convert to (the worker's getmany returns up to "
                        "C2M_BATCH_MAX_EVENTS, 10,000)")
    parser.add_argument("--worker-us-per-event", type=float, default=6.0,
                        help="the worker's time per event to compare with (1e6 / events/s "
                        "of python -m bench; about 6 us at ~165k events/s)")
    args = parser.parse_args()
    direct, agent = asyncio.run(_measure(args.batches, args.repeats))
    d, a = statistics.median(direct) * 1e6, statistics.median(agent) * 1e6
    print(f"hand-off per batch (median of {args.repeats} x {args.batches:,}): direct call "
          f"{d:.1f} us, through the agent {a:.1f} us, the agent adds {a - d:.1f} us")
    for n in args.events_per_batch:
        share = (a - d) / n / args.worker_us_per_event
        print(f"  batches of {n:,} events: {(a - d) / n * 1000:.2f} ns an event, "
              f"{share:.3%} of {args.worker_us_per_event} us an event")


if __name__ == "__main__":
    main()
