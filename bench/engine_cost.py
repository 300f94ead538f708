"""Cost of the engine alone per demand event: ``python -m bench.engine_cost``.

The end-to-end numbers of ``python -m bench`` move by +-40% with this machine's speed
(shared cores), so a 5% change in the hot path cannot be seen in them. This measures the
part of a worker's time that c2m-pulse's own code decides: ``DemandEngine.process_runs``
and the flush cuts (``flush_batch`` / ``flushed``), on the same simulator events as the
bench, partitioned by key like the producer (kafka-python's murmur2, 4 partitions) and
fed in batches of runs as the consumer hands ``getmany``'s over (up to 1,000 records of
each partition).

Two measures:

- CPU microseconds per event (``time.process_time``; noisy like everything timed here);
- with ``--instructions``: instructions per event counted by valgrind's callgrind, which
  does not depend on the machine's speed or load (same code and input, same count to
  within ~0.1%). The script runs itself twice under callgrind, once only loading the
  input and building the engine and once also processing it; the difference divided by
  the number of events is the engine's count. Needs ``valgrind`` (Debian package); each
  run takes about a minute for the default 40,000 events.

To compare two versions, run it in two checkouts (``git worktree add``) on the same
``--events`` and ``--seed``. ``--path`` chooses the engine's path, to price the compiled
core against what would replace it: ``compiled`` (the default: the C lanes),
``msgspec`` (``EngineConfig(native=False)``: msgspec decoding and the Python apply),
``pydantic`` (``fast_paths=False``: the contract decoder for every event).
"""

from __future__ import annotations

import argparse
import gc
import pickle
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson
from kafka.partitioner.default import murmur2

from bench.__main__ import T0, _history
from streams.core.config import EngineConfig
from streams.core.engine import DemandEngine, Record, runs_of

PARTITIONS = 4
BATCH_PER_PARTITION = 1_000
FLUSH_EVERY = 4  # batches between flush cuts

Raw = tuple[str, int, int, int, bytes, bytes]  # topic, partition, offset, ts, key, value


def make_input(n: int, seed: int) -> tuple[list[Raw], list[list[Raw]]]:
    """(product records, batches of demand records) for ``n`` simulator demand events."""
    products, demand = _history(seed, T0, n)
    prods = [
        (e.topic, 0, i, e.ts_ms + 1000, e.key.encode(), orjson.dumps(e.value))
        for i, e in enumerate(products)
    ]
    parts: dict[tuple[str, int], list[Raw]] = {}
    for e in demand:
        key = e.key.encode()
        p = (murmur2(key) & 0x7FFFFFFF) % PARTITIONS
        run = parts.setdefault((e.topic, p), [])
        run.append((e.topic, p, len(run), e.ts_ms + 50, key, orjson.dumps(e.value)))
    batches: list[list[Raw]] = []
    at = dict.fromkeys(parts, 0)
    while any(at[tp] < len(recs) for tp, recs in parts.items()):
        batch: list[Raw] = []
        for tp, recs in parts.items():
            i = at[tp]
            batch += recs[i : i + BATCH_PER_PARTITION]
            at[tp] = i + BATCH_PER_PARTITION
        batches.append(batch)
    return prods, batches


#: the engine's paths ``--path`` chooses between
PATHS = {
    "compiled": EngineConfig(),
    "msgspec": EngineConfig(native=False),
    "pydantic": EngineConfig(fast_paths=False, native=False),
}


def run_engine(
    prods: list[Raw], raw_batches: list[list[Raw]], process: bool, path: str = "compiled"
) -> tuple[int, float]:
    """Build the engine (catalog from ``prods``) on ``path``; if ``process``, apply every
    batch with a flush cut every ``FLUSH_EVERY`` batches. Returns (events, CPU seconds of
    the apply)."""
    engine = DemandEngine(PATHS[path])
    for r in prods:
        engine.apply_product(Record(*r))
    batches = [runs_of(Record(*r) for r in b) for b in raw_batches]
    n = sum(len(run) for b in batches for _, _, run in b)
    gc.collect()
    gc.freeze()
    gc.set_threshold(200_000, 20, 100)  # as the worker (streams.runner)
    t0 = time.process_time()
    if process:
        for k, batch in enumerate(batches):
            engine.process_runs(batch)
            if k % FLUSH_EVERY == FLUSH_EVERY - 1:
                engine.flushed(engine.flush_batch())
        engine.flushed(engine.flush_batch())
    return n, time.process_time() - t0


def _callgrind(data: Path, process: bool, path: str) -> int:
    cmd = [
        "valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
        sys.executable, "-m", "bench.engine_cost", "--child", str(data),
        "--process" if process else "--no-process", "--path", path,
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    m = re.search(r"Collected : (\d+)", out.stderr)
    if m is None:
        raise RuntimeError(f"no instruction count from callgrind: {out.stderr[-500:]}")
    return int(m.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=40_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--runs", type=int, default=3, help="CPU-time runs (median)")
    parser.add_argument("--instructions", action="store_true",
                        help="count instructions per event with callgrind (needs valgrind)")
    parser.add_argument("--path", choices=sorted(PATHS), default="compiled",
                        help="the engine's path (default: compiled)")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--process", action=argparse.BooleanOptionalAction, default=True,
                        help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child is not None:  # one measured run under callgrind
        with args.child.open("rb") as f:
            prods, batches = pickle.load(f)  # noqa: S301 - written by the parent
        run_engine(prods, batches, args.process, args.path)
        return

    prods, batches = make_input(args.events, args.seed)
    times = []
    for _ in range(args.runs):
        n, cpu = run_engine(prods, batches, True, args.path)
        times.append(cpu / n * 1e6)
    times.sort()
    print(f"{n:,} events, {args.path} path: {times[len(times) // 2]:.2f} us CPU per event "
          f"(median of {args.runs}: {', '.join(f'{t:.2f}' for t in times)})")
    if args.instructions:
        if shutil.which("valgrind") is None:
            sys.exit("--instructions needs valgrind (apt-get install valgrind)")
        with tempfile.TemporaryDirectory(prefix="c2m-engine-cost-") as tmp:
            data = Path(tmp) / "input.pkl"
            with data.open("wb") as f:
                pickle.dump((prods, batches), f)
            base = _callgrind(data, False, args.path)
            full = _callgrind(data, True, args.path)
        print(f"{n:,} events: {(full - base) / n:,.0f} instructions per event "
              f"(callgrind: {full:,} with processing, {base:,} without)")


if __name__ == "__main__":
    main()
