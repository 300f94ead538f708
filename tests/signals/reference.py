"""Independent reference aggregation for the alert tests: simulator events -> AlertInputs.

Written from the event contract alone (not from the engine): cell orders count, per
order, each distinct (category, colour, size, price band, region) cell its lines touch.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import Any

from streams.core.alerting.inputs import DIMENSIONS, AlertInputs, Product, SkuHour
from streams.core.dedup import id_hash
from streams.core.kanon import ORDER, shop_tag
from streams.core.pricebands import PriceBands
from streams.sim.model import SimEvent


def ts_ms(value: Any) -> int:
    if isinstance(value, int):
        return value
    return int(datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() * 1000)


def hour(ms: int) -> int:
    return ms // 3_600_000 * 3600


def reference_inputs(events: list[SimEvent]) -> AlertInputs:
    bands = PriceBands()
    products: dict[str, Product] = {}
    for ev in events:
        v = ev.value
        if v["event_type"] == "product_upsert":
            products[v["sku"]] = Product(
                v["sku"], v["factory_id"], v["category"], v["color"], v["size"],
                bands.label(v["list_price"]), v["lead_time_days"], v["moq"], v["list_price"],
                v["shop_id"],
            )
    # counters per (sku, hour), in SkuHour's field order (SkuHour is an immutable tuple)
    sku_hours: dict[str, dict[int, list[int]]] = defaultdict(dict)
    fields = {name: i for i, name in enumerate(SkuHour._fields)}
    orders: dict[tuple[str, str, str], dict[int, int]] = defaultdict(lambda: defaultdict(int))
    cat_orders: dict[str, dict[int, int]] = defaultdict(lambda: defaultdict(int))
    # who each key's orders came from (the k-shop rule of market signals): the shop of the
    # order, tagged as the engine tags it (streams.core.kanon)
    order_shops: dict[tuple[str, str, str], dict[int, set[int]]] = defaultdict(
        lambda: defaultdict(set))

    def add(sku: str, h: int, name: str, n: int) -> None:
        b = sku_hours[sku].get(h)
        if b is None:
            b = sku_hours[sku][h] = list(SkuHour())
        b[fields[name]] += n

    for ev in events:
        v = ev.value
        kind = v["event_type"]
        if kind == "product_upsert":
            continue
        t = ts_ms(v["ts"])
        h = hour(t)
        if kind == "order_placed":
            cells = set()
            for sku in {line["sku"] for line in v["lines"]}:
                add(sku, h, "orders", 1)
            for line in v["lines"]:
                add(line["sku"], h, "units", line["qty"])
                p = products[line["sku"]]
                cells.add((p.category, p.color, p.size, p.price_band, v["region"]))
            tag = shop_tag(id_hash(v["shop_id"]), ORDER)
            for cat, color, size, band, _region in cells:
                cat_orders[cat][h] += 1
                for dim, value in zip(DIMENSIONS, (color, size, band), strict=True):
                    orders[(cat, dim, value)][h] += 1
                    order_shops[(cat, dim, value)][h].add(tag)
        elif kind == "order_cancelled":
            for line in v["lines"]:
                add(line["sku"], h, "cancelled", line["qty"])
        elif kind == "page_view":
            add(v["sku"], h, "pageviews", 1)
        elif kind == "restock_shipped":
            add(v["sku"], h, "shipped", v["qty"])
        elif kind == "restock_received":
            add(v["sku"], h, "received", v["qty"])
        elif kind == "stock_level":
            add(v["sku"], h, "count_ts", 0)
            b = sku_hours[v["sku"]][h]
            ts_i, on_hand_i = fields["count_ts"], fields["count_on_hand"]
            if (t, v["on_hand"]) > (b[ts_i], b[on_hand_i]):
                b[ts_i], b[on_hand_i] = t, v["on_hand"]
    return AlertInputs(
        products,
        {sku: {h: SkuHour(*b) for h, b in hours.items()} for sku, hours in sku_hours.items()},
        {k: dict(s) for k, s in orders.items()},
        {k: dict(s) for k, s in cat_orders.items()},
        {k: {h: frozenset(t) for h, t in s.items()} for k, s in order_shops.items()},
    )
