"""The alert service's wiring of its kept inputs (``AlertService._evaluate``): the
checkpoints are read before the inputs, what they name is read again, and the kept
inputs equal a load of the whole span at the next hour after publishes that land before,
between or after the service's two reads (one landing during a load may or may not be in
it: the checkpoint after the seen one names it for the next). The store is a fake over
an in-memory truth (the chDB side: tests/integration/test_serving.py)."""

from __future__ import annotations

import asyncio
import copy
import random
from typing import Any

from streams.alerting import AlertService
from streams.core.alerting.inputs import DAY, HOUR, AlertInputs, Product
from tests.helpers.alert_inputs import SKUS, T0, load, load_also, write_hour

TP = ("shop.orders", 0)


class FakeStore:
    """``AlertStore``'s input side over ``truth``; every publish appends a checkpoint row
    naming its hours. ``during`` runs a publish inside the next ``changed_hours`` (after
    its answer) or ``load_inputs`` (after its answer)."""

    def __init__(self, truth: AlertInputs) -> None:
        self.truth = truth
        self.rows: list[tuple[int, int, set[int]]] = [(1, 1, set())]  # position, at, hours
        self.during: dict[str, int] = {}
        self.rng = random.Random(3)
        self.full_loads = 0

    def publish(self, h: int) -> None:
        write_hour(self.truth, h, self.rng)
        pos = self.rows[-1][0] + 1
        self.rows.append((pos, pos, {h}))

    def _landing(self, where: str) -> None:
        h = self.during.pop(where, None)
        if h is not None:
            self.publish(h)

    def first_hour(self) -> int:
        return T0

    def max_lead_time_days(self) -> int:
        return 0

    def checkpoint_positions(self) -> dict[tuple[str, int], tuple[int, int]]:
        pos, at, _ = self.rows[-1]
        return {TP: (pos, at)}

    def changed_hours(self, seen: dict[tuple[str, int], tuple[int, int]]) -> Any:
        pos, _at = seen[TP]
        after = [r for r in self.rows if r[0] > pos]
        out = (self.checkpoint_positions(), set().union(*(r[2] for r in after)))
        self._landing("changed_hours")
        return out

    def load_inputs(self, lo: int, hi: int, mf: int | None = None, also: Any = ()) -> Any:
        if mf is not None:
            self.full_loads += 1
            out = load(self.truth, lo, hi, mf)
        else:
            out = load_also(self.truth, lo, hi, list(also))
        self._landing("load_inputs")
        return out

    def write(self, *args: Any) -> None:
        pass


def test_kept_inputs_follow_publishes_landing_before_between_and_after_the_reads() -> None:
    truth = AlertInputs(products={s: Product(s, "f1", "socks", "red", "M", "10-20", 5, 100)
                                  for s in SKUS})
    rng = random.Random(11)
    for h in range(T0 - 16 * DAY, T0, HOUR):
        write_hour(truth, h, rng)
    store = FakeStore(truth)

    async def io(fn: Any, *args: Any) -> Any:
        return fn(*args)

    async def publish(topic: str, key: bytes, value: bytes) -> Any:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done

    svc = AlertService(store, publish, io, max_hours_per_tick=1,  # type: ignore[arg-type]
                       settled_horizon_s=48 * HOUR)
    svc.last_hour = T0 - 2 * HOUR

    async def run() -> None:
        for step, hour in enumerate(range(T0, T0 + 30 * HOUR, HOUR)):
            write_hour(truth, hour, rng)  # the hour that just ended, before its checkpoint
            store.rows.append((store.rows[-1][0] + 1, store.rows[-1][0] + 1, {hour}))  # named
            store.publish(hour - rng.randint(1, 40) * HOUR)  # a late correction
            if step % 3 == 1:  # lands after the checkpoints were read, before the inputs
                store.during["changed_hours"] = hour - rng.randint(1, 40) * HOUR
            if step % 3 == 2:  # lands after both reads: named by the next checkpoints
                store.during["load_inputs"] = hour - rng.randint(1, 40) * HOUR
            marks = {TP: (hour + HOUR) * 1000}
            assert await svc._evaluate(hour + HOUR, marks) == 1
            assert svc._inputs._span is not None
            assert store.during == {}  # it landed
            if step % 3 == 0:
                # nothing landed during this evaluation: what landed during the last two
                # (after their checkpoints were read) has been read now
                lo, hi, mf = svc._inputs._span
                assert copy.deepcopy(svc._inputs._inputs) == load(truth, lo, hi, mf), step
        assert store.full_loads == 1  # the first; every later hour read only what changed

    asyncio.run(run())
