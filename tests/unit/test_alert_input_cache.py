"""The alert service's kept inputs (``streams.core.alerting.inputs.InputCache``) against a
load of the whole span, hour after hour, while hours inside the correction horizon
change, partitions are reset or added and the restock transit window moves.

The reference is a plain filter of the full truth (what ``AlertStore.load_inputs``
answers for a span): every SKU hour and cell in [lo, hi), and the SKU hours with restock
movements, as movements only, in [movements_from, lo)."""

from __future__ import annotations

import random
from typing import Any

import pytest

from streams.core.alerting.evaluator import AlertConfig, AlertEvaluator, PreparedInputs
from streams.core.alerting.inputs import (
    DAY,
    HOUR,
    AlertInputs,
    InputCache,
    Product,
    settled_before,
)
from tests.helpers.alert_inputs import HORIZON, SKUS, T0, load, load_also, write_hour


@pytest.mark.parametrize("reads", ["from the bound", "changed hours"])
def test_kept_inputs_equal_a_whole_load_hour_after_hour(reads: str) -> None:
    """``from the bound``: every hour from ``plan``'s start is read again. ``changed
    hours``: only the hours written since the last load (what the checkpoints since then
    list: ``AlertStore.changed_hours``) and the hours new to the span; hours written
    before they entered the span (the truth holds the future from the start) must be
    read too."""
    rng = random.Random(7)
    truth = AlertInputs(products={s: Product(s, "f1", "socks", "red", "M", "10-20", 5, 100)
                                  for s in SKUS})
    for h in range(T0 - 5 * DAY, T0 + 20 * DAY, HOUR):
        write_hour(truth, h, rng)
    cache = InputCache()
    evaluator = AlertEvaluator(AlertConfig())
    parts = [("shop.orders", 0), ("shop.orders", 1)]
    partial = full = 0
    transit = 17 * DAY  # a long lead time: movements before lo count
    behind = 0
    last_settled: int | None = None
    for step, hour in enumerate(range(T0 + 16 * DAY, T0 + 19 * DAY, HOUR)):
        wm_ms = (hour + HOUR) * 1000 + rng.randint(0, 3599_000)
        behind = max(behind, wm_ms - rng.randint(0, 6) * HOUR * 1000)  # never goes back
        marks = {parts[0]: wm_ms, parts[1]: behind}
        if step == 30:  # a partition reset: its watermark goes back
            marks[parts[1]] = behind = (hour - 3 * DAY) * 1000
        if step == 40:  # a new partition
            parts.append(("shop.orders", 2))
        if step >= 40:
            marks[("shop.orders", 2)] = wm_ms
        if step == 50:  # a longer lead time: the transit window reaches further back
            transit = 19 * DAY
        settled = settled_before(marks, parts, HORIZON)
        assert settled is not None
        # corrections since the last load: any hour that was still open then (the
        # watermarks have moved on since, so some of those hours are final now)
        open_from = settled if last_settled is None else min(last_settled, settled)
        written = {*rng.sample(range(open_from, hour + HOUR, HOUR), 3), open_from}
        for h in written:
            write_hour(truth, h, rng)
            # a correction can also empty a key's hour (kept inputs must drop it)
            every: tuple[dict[Any, dict[int, Any]], ...] = (
                truth.sku_hours, truth.orders, truth.order_shops)
            for series in every:
                held = sorted(k for k, hours in series.items() if h in hours)
                if held and rng.random() < 0.5:
                    del series[rng.choice(held)][h]
        lo, hi, mf = hour - 15 * DAY, hour + HOUR, hour + HOUR - transit
        start = cache.plan(lo, hi, mf, settled, marks)
        also: list[int] = []
        if start is not None and reads == "changed hours":
            start, also = cache.partial(start, written)
            assert len(also) <= len(written)
        loaded = (load(truth, lo, hi, mf) if start is None
                  else load_also(truth, start, hi, also))
        got = cache.take(lo, hi, mf, start, loaded, marks, settled, also)
        last_settled = settled
        assert got == load(truth, lo, hi, mf), step
        partial += start is not None
        full += start is None
        evaluator.evaluate(hour, PreparedInputs(got, T0))  # reads it, must not change it
        assert got == load(truth, lo, hi, mf), step
    assert full == 4 and partial == 68  # the first load, the reset, the new partition, transit


def test_nothing_is_kept_while_a_partition_has_no_watermark() -> None:
    assert settled_before({("t", 0): 5 * DAY * 1000}, [("t", 0), ("t", 1)], HORIZON) is None
    assert settled_before({("t", 0): -1}, [], HORIZON) is None
    assert settled_before({("t", 0): (3 * DAY + 1800) * 1000, ("t", 1): 9 * DAY * 1000},
                          [], HORIZON) == DAY
    cache = InputCache()
    truth = AlertInputs()
    cache.take(0, DAY, 0, None, truth, {})  # nothing known final when read
    assert cache.plan(0, DAY + HOUR, 0, 5 * HOUR, {}) is None
    cache.take(0, DAY, 0, None, truth, {}, 3 * HOUR)
    assert cache.plan(0, DAY + HOUR, 0, None, {}) is None
    # from the last load's bound, not today's: hours 3-4 were open when read
    assert cache.plan(0, DAY + HOUR, 0, 5 * HOUR, {}) == 3 * HOUR
    assert cache.plan(4 * HOUR, DAY + HOUR, 0, 5 * HOUR, {}) is None  # bound before lo
