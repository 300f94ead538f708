"""The alert rules' inputs as a test's truth: an in-memory history of SKU hours and cell
orders, and what ``AlertStore.load_inputs`` answers for a span of it (the reference the
kept inputs are compared with: tests/unit/test_alert_input_cache.py,
tests/unit/test_alert_service_inputs.py)."""

from __future__ import annotations

import copy
import random

from streams.core.alerting.inputs import HOUR, AlertInputs, SkuHour

T0 = 1_793_491_200  # 2026-11-01T00:00:00Z
HORIZON = 48 * HOUR
SKUS = [f"s{i}" for i in range(12)]
KEYS = [("socks", "color", c) for c in ("red", "blue", "white")]


def load(truth: AlertInputs, lo: int, hi: int, movements_from: int | None) -> AlertInputs:
    out = AlertInputs(products=dict(truth.products))
    for sku, hours in truth.sku_hours.items():
        got = {h: copy.copy(v) for h, v in hours.items() if lo <= h < hi}
        if movements_from is not None:
            got.update({h: SkuHour(shipped=v.shipped, received=v.received)
                        for h, v in hours.items()
                        if movements_from <= h < lo and (v.shipped or v.received)})
        if got:
            out.sku_hours[sku] = got
    for name in ("orders", "category_orders", "order_shops"):
        for key, hours in getattr(truth, name).items():
            got = {h: v for h, v in hours.items() if lo <= h < hi}
            if got:
                getattr(out, name)[key] = got
    return out


def write_hour(truth: AlertInputs, h: int, rng: random.Random) -> None:
    for sku in rng.sample(SKUS, rng.randint(0, len(SKUS))):
        truth.sku_hours.setdefault(sku, {})[h] = SkuHour(
            units=rng.randint(0, 9), cancelled=rng.randint(0, 1),
            shipped=rng.choice([0, 0, 0, 40]), received=rng.choice([0, 0, 0, 40]),
            count_ts=rng.choice([-1, h * 1000 + 5]), count_on_hand=rng.randint(0, 50),
            orders=rng.randint(0, 5), pageviews=rng.randint(0, 30))
    for key in rng.sample(KEYS, rng.randint(0, len(KEYS))):
        truth.orders.setdefault(key, {})[h] = rng.randint(1, 9)
        truth.order_shops.setdefault(key, {})[h] = frozenset(
            rng.sample(range(0, 400, 4), rng.randint(0, 4)))
        truth.category_orders.setdefault(key[0], {})[h] = rng.randint(1, 20)


def load_also(truth: AlertInputs, start: int, hi: int, also: list[int]) -> AlertInputs:
    """Every hour from ``start`` and the hours ``also`` in full (``load_inputs(...,
    also=...)``)."""
    out = load(truth, start, hi, None)
    for h in also:
        one = load(truth, h, h + HOUR, None)
        for name in ("sku_hours", "orders", "category_orders", "order_shops"):
            for key, hours in getattr(one, name).items():
                getattr(out, name).setdefault(key, {}).update(hours)
    return out

