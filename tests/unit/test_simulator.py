"""The shop simulator: deterministic, valid against the contract, realistic enough."""

from __future__ import annotations

import asyncio
import itertools
import re
import time
from collections import Counter, defaultdict
from typing import Any, ClassVar

import orjson
import pytest

from schemas.contract import (
    TOPIC_LOGISTICS,
    TOPIC_ORDERS,
    TOPIC_PAGEVIEWS,
    TOPIC_PRODUCTS,
    decode,
)
from schemas.types import parse_event_time
from streams.core.pricebands import PriceBands
from streams.sim import producer as producer_mod
from streams.sim.model import (
    CST_OFFSET_MS,
    HOUR_MS,
    TS_CST,
    TS_EPOCH_MS,
    TS_UTC,
    ShopSimulator,
    SimEvent,
    format_ts,
    generate_history,
)
from streams.sim.scenario import Scenario

# 2026-11-10T16:00:00Z = 2026-11-11 00:00 China time.
START = 1_794_326_400_000
HOURS = 24.0
OPH = 150.0  # orders per hour: enough of everything, small enough to be fast
END = START + int(HOURS * HOUR_MS)
_RFC3339_MS = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}(Z|\+08:00)$")


@pytest.fixture(scope="module")
def history() -> list[SimEvent]:
    return generate_history(7, START, HOURS, orders_per_hour=OPH)


@pytest.fixture(scope="module")
def demand(history: list[SimEvent]) -> list[SimEvent]:
    return [e for e in history if e.topic != TOPIC_PRODUCTS]


def _types(events: list[SimEvent]) -> Counter[str]:
    return Counter(e.value["event_type"] for e in events)


def _cst_hour(ts_ms: int) -> int:
    return (ts_ms + CST_OFFSET_MS) // HOUR_MS % 24


# ---------------------------------------------------------------------- determinism
def test_same_seed_same_events() -> None:
    a = generate_history(3, START, 3, orders_per_hour=300)
    b = generate_history(3, START, 3, orders_per_hour=300)
    assert a == b
    c = generate_history(4, START, 3, orders_per_hour=300)
    assert [e.value for e in a] != [e.value for e in c]


def test_chunking_does_not_change_the_events() -> None:
    until = START + 5 * HOUR_MS
    whole = ShopSimulator(11, START, orders_per_hour=300).events(until)
    sim = ShopSimulator(11, START, orders_per_hour=300)
    pieces: list[SimEvent] = []
    t = START - 1
    step = 1
    while t < until:
        t = min(until, t + step)
        pieces.extend(sim.events(t))
        step = step * 7 % 1_000_003 + 12_345  # irregular steps, some within one tick
    assert pieces == whole
    assert sim.events(until) == []  # nothing is returned twice


@pytest.mark.parametrize("scenario", [None, Scenario(censor_stockouts=True)])
@pytest.mark.parametrize(("disorder_ms", "ts_format_mix"), [(180_000, True), (0, False)])
def test_without_page_views_the_other_events_are_those_of_a_full_run(
    scenario: Scenario | None, disorder_ms: int, ts_format_mix: bool
) -> None:
    def run(page_views: bool) -> list[SimEvent]:
        sim = ShopSimulator(5, START, orders_per_hour=300, scenario=scenario,
                            disorder_ms=disorder_ms, ts_format_mix=ts_format_mix,
                            page_views=page_views)
        return sim.catalog() + sim.events(START + 30 * HOUR_MS)

    full = run(True)
    others = [e for e in full if e.topic != TOPIC_PAGEVIEWS]
    assert len(others) < len(full)
    assert run(False) == others


def test_catalog_is_stable_and_not_consumed() -> None:
    sim = ShopSimulator(5, START)
    first = sim.catalog()
    sim.events(START + HOUR_MS)
    assert sim.catalog() == first
    assert len(first) == 120
    assert len({e.key for e in first}) == 120


def test_a_product_listed_by_several_shops() -> None:
    """``shops_per_product``: every product (category, colour, size, list price, factory,
    lead time, MOQ) is listed by that many distinct shops, each as a SKU of its own, and
    every shop lists something; the listings sell (orders of several shops per product),
    and every price band is still in the catalog."""
    sim = ShopSimulator(5, START, n_shops=12, n_skus=120, shops_per_product=4,
                        orders_per_hour=OPH)
    catalog = [e.value for e in sim.catalog()]
    assert len({p["sku"] for p in catalog}) == 120
    products: dict[tuple[object, ...], list[str]] = defaultdict(list)
    for p in catalog:
        products[(p["category"], p["color"], p["size"], p["list_price"], p["factory_id"],
                  p["lead_time_days"], p["moq"])].append(p["shop_id"])
    assert len(products) == 30
    assert all(len(set(shops)) == len(shops) == 4 for shops in products.values())
    assert {p["shop_id"] for p in catalog} == {f"S{i:03d}" for i in range(1, 13)}
    bands = PriceBands([0, 10, 20, 50, 100, 200, 500])
    assert {bands.label(p["list_price"]) for p in catalog} == set(bands.labels)
    product_of = {p["sku"]: (p["category"], p["color"], p["size"], p["list_price"])
                  for p in catalog}
    sellers: dict[tuple[object, ...], set[str]] = defaultdict(set)
    for e in sim.events(START + 6 * HOUR_MS):
        if e.value["event_type"] == "order_placed":
            for line in e.value["lines"]:
                sellers[product_of[line["sku"]]].add(e.value["shop_id"])
    assert sum(len(s) >= 3 for s in sellers.values()) >= 10, sellers
    # the default (one shop per product) is the catalog it always was: SKUs of 5 shops
    assert len({e.value["shop_id"] for e in ShopSimulator(5, START).catalog()}) == 5


# ---------------------------------------------------------------------- contract
def test_every_event_validates_against_the_contract(history: list[SimEvent]) -> None:
    for ev in history:
        model = decode(ev.topic, orjson.dumps(ev.value))
        assert model.ts == ev.ts_ms
        assert model.event_id == ev.value["event_id"]


def test_keys_follow_the_topic_conventions(history: list[SimEvent]) -> None:
    for ev in history:
        v = ev.value
        if ev.topic == TOPIC_ORDERS:
            assert ev.key == v["order_id"]
        elif ev.topic in (TOPIC_PAGEVIEWS, TOPIC_PRODUCTS):
            assert ev.key == v["sku"]
        else:
            assert ev.topic == TOPIC_LOGISTICS
            if v["event_type"] in ("shipped", "delivered", "returned"):
                assert ev.key == v["order_id"]
            else:
                assert ev.key == v["sku"]
                assert "order_id" not in v


def test_event_ids_unique(history: list[SimEvent]) -> None:
    ids = [e.value["event_id"] for e in history]
    assert len(ids) == len(set(ids))
    # another run (other start) does not reuse them: no false duplicates downstream
    other = generate_history(7, START + HOUR_MS, 1, orders_per_hour=OPH)
    assert not set(ids) & {e.value["event_id"] for e in other}


def test_event_times_within_the_run(history: list[SimEvent], demand: list[SimEvent]) -> None:
    assert all(START <= e.ts_ms <= END for e in demand)
    catalog = [e for e in history if e.topic == TOPIC_PRODUCTS]
    assert catalog == history[: len(catalog)]
    assert all(e.ts_ms < START for e in catalog)


# ---------------------------------------------------------------------- content
def test_all_price_bands_appear(history: list[SimEvent]) -> None:
    bands = PriceBands()
    catalog = {e.key: e.value for e in history if e.topic == TOPIC_PRODUCTS}
    assert {bands.label(v["list_price"]) for v in catalog.values()} == set(bands.labels)
    prices = [v["list_price"] for v in catalog.values()]
    assert min(prices) >= 0 and max(prices) <= 800
    ordered = {
        bands.label(catalog[line["sku"]]["list_price"])
        for e in history
        if e.topic == TOPIC_ORDERS and e.value["event_type"] == "order_placed"
        for line in e.value["lines"]
    }
    assert ordered == set(bands.labels)


def test_catalog_attributes(history: list[SimEvent]) -> None:
    catalog = [e.value for e in history if e.topic == TOPIC_PRODUCTS]
    categories = {v["category"] for v in catalog}
    assert {"袜子", "漱口杯", "童装"} <= categories
    assert any(c.isascii() for c in categories)
    assert {v["factory_id"] for v in catalog} <= {f"F00{i}" for i in range(1, 7)}
    assert len({v["factory_id"] for v in catalog}) >= 4
    assert all(3 <= v["lead_time_days"] <= 30 for v in catalog)
    assert all(100 <= v["moq"] <= 5000 for v in catalog)
    assert {"均码"} <= {v["size"] for v in catalog}
    assert len({v["color"] for v in catalog}) >= 6


def test_all_event_types_present(demand: list[SimEvent]) -> None:
    types = _types(demand)
    for kind in (
        "order_placed", "order_cancelled", "page_view", "shipped", "delivered", "returned",
        "stock_level", "restock_shipped", "restock_received",
    ):
        assert types[kind] > 0, kind


def test_orders_are_plausible(demand: list[SimEvent]) -> None:
    placed = [e for e in demand if e.value["event_type"] == "order_placed"]
    # daily mean rate, give or take the Poisson noise
    assert 0.85 * OPH * HOURS < len(placed) < 1.15 * OPH * HOURS
    n_lines = Counter(len(e.value["lines"]) for e in placed)
    assert set(n_lines) <= {1, 2, 3} and n_lines[1] > n_lines[2] > n_lines[3] > 0
    qtys = Counter(line["qty"] for e in placed for line in e.value["lines"])
    assert set(qtys) == {1, 2, 3, 4, 5}
    assert len({e.value["shop_id"] for e in placed}) == 5
    regions = Counter(e.value["region"] for e in placed)
    assert {"浙江", "广东", "江苏", "北京", "四川"} <= set(regions)
    # skewed popularity: the top tenth of SKUs sells a large share of the lines
    by_sku = Counter(line["sku"] for e in placed for line in e.value["lines"])
    top = sum(n for _, n in by_sku.most_common(12))
    assert top > 0.3 * sum(by_sku.values())
    # repeat buyers exist
    assert max(Counter(e.value["buyer_id"] for e in placed).values()) > 1


def test_prices_near_list_price(history: list[SimEvent]) -> None:
    list_price = {e.key: e.value["list_price"] for e in history if e.topic == TOPIC_PRODUCTS}
    ratios = [
        line["unit_price"] / list_price[line["sku"]]
        for e in history
        if e.topic == TOPIC_ORDERS and e.value["event_type"] == "order_placed"
        for line in e.value["lines"]
    ]
    assert all(0.49 <= r <= 1.0 for r in ratios)
    full = sum(r == 1.0 for r in ratios) / len(ratios)
    assert 0.6 < full < 0.9  # occasional discounts


def test_cancellations_repeat_the_order(demand: list[SimEvent]) -> None:
    placed = {
        e.value["order_id"]: e for e in demand if e.value["event_type"] == "order_placed"
    }
    cancelled = [e for e in demand if e.value["event_type"] == "order_cancelled"]
    assert 0.03 < len(cancelled) / len(placed) < 0.075
    for c in cancelled:
        p = placed[c.value["order_id"]]
        assert c.ts_ms > p.ts_ms
        for field in ("lines", "region", "shop_id", "buyer_id"):
            assert c.value[field] == p.value[field]
    # a cancelled order is never shipped
    shipped = {e.value["order_id"] for e in demand if e.value["event_type"] == "shipped"}
    assert not shipped & {c.value["order_id"] for c in cancelled}


def test_logistics_follow_the_orders(demand: list[SimEvent]) -> None:
    placed = {
        e.value["order_id"]: e for e in demand if e.value["event_type"] == "order_placed"
    }
    by_order: dict[str, list[SimEvent]] = defaultdict(list)
    for e in demand:
        if e.value["event_type"] in ("shipped", "delivered", "returned"):
            by_order[e.value["order_id"]].append(e)
    shipped_lines = 0
    for order_id, moves in by_order.items():
        p = placed.get(order_id)
        if p is None:
            continue  # placed before the simulation started (warm start)
        lines = {line["sku"]: line["qty"] for line in p.value["lines"]}
        for m in moves:
            assert m.ts_ms > p.ts_ms
            assert m.value["sku"] in lines and m.value["qty"] <= lines[m.value["sku"]]
            assert m.value["region"] == p.value["region"]
            assert m.value["shop_id"] == p.value["shop_id"]
            shipped_lines += m.value["event_type"] == "shipped"
    assert shipped_lines > 0
    types = _types(demand)
    # Returns come from delivered lines at a few percent.
    assert 0.02 < types["returned"] / types["delivered"] < 0.10
    reasons = [e.value.get("reason") for e in demand if e.value["event_type"] == "returned"]
    assert any(reasons)


def test_warm_start_logistics_from_the_first_hour() -> None:
    sim = ShopSimulator(2, START, orders_per_hour=300)
    first_hour = _types(sim.events(START + HOUR_MS))
    assert first_hour["shipped"] > 100 and first_hour["delivered"] > 100
    assert first_hour["returned"] > 0
    cold = ShopSimulator(2, START, orders_per_hour=300, warm_start=False)
    cold_hour = _types(cold.events(START + HOUR_MS))
    assert cold_hour["delivered"] == 0 and cold_hour["returned"] == 0


def test_return_rate_depends_on_size(history: list[SimEvent]) -> None:
    size = {e.key: e.value["size"] for e in history if e.topic == TOPIC_PRODUCTS}
    delivered: Counter[bool] = Counter()
    returned: Counter[bool] = Counter()
    for e in history:
        kind = e.value["event_type"]
        if kind == "delivered":
            delivered[size[e.value["sku"]] == "均码"] += 1
        elif kind == "returned":
            returned[size[e.value["sku"]] == "均码"] += 1
    one_size = returned[True] / delivered[True]
    sized = returned[False] / delivered[False]
    assert one_size < 0.7 * sized


def test_pageviews_per_order(demand: list[SimEvent]) -> None:
    types = _types(demand)
    assert 10 <= types["page_view"] / types["order_placed"] <= 30
    views = [e for e in demand if e.topic == TOPIC_PAGEVIEWS]
    visitors = Counter(e.value["visitor_id"] for e in views)
    assert max(visitors.values()) > 5  # returning visitors
    assert len(visitors) < len(views) / 2


def test_stock_levels_and_restocks(history: list[SimEvent], demand: list[SimEvent]) -> None:
    factory = {e.key: e.value["factory_id"] for e in history if e.topic == TOPIC_PRODUCTS}
    levels = Counter(e.key for e in demand if e.value["event_type"] == "stock_level")
    assert set(levels) == set(factory)
    assert all(HOURS - 1 <= n <= HOURS + 1 for n in levels.values())  # hourly per SKU
    restocks = [e for e in demand if e.value["event_type"].startswith("restock_")]
    for r in restocks:
        assert r.value["factory_id"] == factory[r.key]
        assert r.value["qty"] >= 100


def test_daily_seasonality(demand: list[SimEvent]) -> None:
    hours = Counter(
        _cst_hour(e.ts_ms) for e in demand if e.value["event_type"] == "order_placed"
    )
    evening = hours[20] + hours[21]
    night = hours[3] + hours[4]
    assert evening > 4 * night


def test_promotion_spike() -> None:
    promo_start = START + 20 * HOUR_MS  # 20:00-22:00 China time
    window = (promo_start, promo_start + 2 * HOUR_MS)

    def orders(**kw: Any) -> int:
        sim = ShopSimulator(21, promo_start - HOUR_MS, orders_per_hour=100, **kw)
        return sum(
            1
            for e in sim.events(window[1] + HOUR_MS)
            if e.value["event_type"] == "order_placed" and window[0] <= e.ts_ms < window[1]
        )

    base = orders()
    promo = orders(promo_start_ms=promo_start, promo_hours=2.0, promo_multiplier=4.0)
    assert 3.0 < promo / base < 5.3


# ---------------------------------------------------------------------- time
def test_disorder_bounded_and_present() -> None:
    disorder = 180_000
    sim = ShopSimulator(8, START, orders_per_hour=300, disorder_ms=disorder)
    events: list[SimEvent] = []
    for k in range(1, 13):
        batch = sim.events(START + k * 15 * 60_000)
        assert all(e.ts_ms <= START + k * 15 * 60_000 for e in batch)
        events.extend(batch)
    high = 0
    out_of_order = 0
    for e in events:
        assert e.ts_ms >= high - disorder
        out_of_order += e.ts_ms < high
        high = max(high, e.ts_ms)
    assert out_of_order > 0.05 * len(events)
    # some events are minutes late, not just milliseconds
    assert any(
        prev.ts_ms - e.ts_ms > 60_000 for prev, e in itertools.pairwise(events)
    )


def test_no_disorder_means_time_order() -> None:
    events = ShopSimulator(8, START, orders_per_hour=300, disorder_ms=0).events(
        START + 2 * HOUR_MS
    )
    assert [e.ts_ms for e in events] == sorted(e.ts_ms for e in events)


def test_ts_formats_mixed_and_exact(history: list[SimEvent]) -> None:
    kinds: Counter[str] = Counter()
    for e in history:
        ts = e.value["ts"]
        if isinstance(ts, int):
            kinds["ms"] += 1
            assert ts == e.ts_ms
        else:
            assert _RFC3339_MS.match(ts), ts
            kinds["Z" if ts.endswith("Z") else "+08:00"] += 1
            assert parse_event_time(ts) == e.ts_ms
    assert all(kinds[k] > 0.1 * len(history) for k in ("ms", "Z", "+08:00"))


def test_ts_format_mix_off() -> None:
    hist = generate_history(1, START, 1, orders_per_hour=100, ts_format_mix=False)
    assert all(e.value["ts"] == e.ts_ms for e in hist)


@pytest.mark.parametrize(
    ("ms", "fmt", "expected"),
    [
        (START + 123, TS_UTC, "2026-11-10T16:00:00.123Z"),
        (START + 123, TS_CST, "2026-11-11T00:00:00.123+08:00"),
        (START + 59_999, TS_CST, "2026-11-11T00:00:59.999+08:00"),
        (START, TS_EPOCH_MS, START),
        (0, TS_UTC, "1970-01-01T00:00:00.000Z"),
    ],
)
def test_format_ts(ms: int, fmt: int, expected: int | str) -> None:
    assert format_ts(ms, fmt) == expected
    assert parse_event_time(format_ts(ms, fmt)) == ms


def test_invalid_arguments() -> None:
    with pytest.raises(ValueError):
        ShopSimulator(1, START, n_shops=0)
    with pytest.raises(ValueError):
        ShopSimulator(1, START, n_shops=5, n_skus=3)
    for per in (0, 6):
        with pytest.raises(ValueError, match="shops_per_product"):
            ShopSimulator(1, START, n_shops=5, shops_per_product=per)
    with pytest.raises(ValueError):
        ShopSimulator(1, START, orders_per_hour=-1)
    with pytest.raises(ValueError):
        ShopSimulator(1, START, disorder_ms=-1)


def test_zero_orders_still_reports_stock() -> None:
    events = ShopSimulator(1, START, orders_per_hour=0).events(START + 2 * HOUR_MS)
    assert events and {e.value["event_type"] for e in events} <= {
        "stock_level", "restock_shipped", "restock_received",
    }


# ---------------------------------------------------------------------- producer
class _FakeProducer:
    """Stands in for AIOKafkaProducer: records what is sent and when."""

    instances: ClassVar[list[_FakeProducer]] = []

    def __init__(self, **kwargs: Any) -> None:
        self.kwargs = kwargs
        self.sent: list[tuple[str, bytes, bytes, int]] = []
        self.flushes = 0
        self.started = self.stopped = False
        _FakeProducer.instances.append(self)

    async def start(self) -> None:
        self.started = True

    async def stop(self) -> None:
        self.stopped = True

    async def flush(self) -> None:
        self.flushes += 1

    async def send(self, topic: str, value: bytes, key: bytes) -> asyncio.Future[None]:
        self.sent.append((topic, key, value, time.time_ns() // 1_000_000))
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        fut.set_result(None)
        return fut


@pytest.fixture
def fake_producer(monkeypatch: pytest.MonkeyPatch) -> type[_FakeProducer]:
    _FakeProducer.instances = []
    monkeypatch.setattr(producer_mod, "AIOKafkaProducer", _FakeProducer)
    return _FakeProducer


def test_run_simulation_produces_catalog_then_events(
    fake_producer: type[_FakeProducer],
) -> None:
    progress: list[int] = []
    n = asyncio.run(
        producer_mod.run_simulation(
            "broker:9092", seed=3, rate=None, duration_s=5.0, speed=20_000.0,
            max_events=3_000, on_progress=progress.append,
            producer_config={"security_protocol": "SASL_SSL", "linger_ms": 20},
        )
    )
    (p,) = fake_producer.instances
    assert n == len(p.sent) == 3_000
    assert p.started and p.stopped and p.flushes >= 2
    assert p.kwargs["acks"] == "all" and p.kwargs["enable_idempotence"] is False
    assert p.kwargs["security_protocol"] == "SASL_SSL" and p.kwargs["linger_ms"] == 20
    assert p.kwargs["bootstrap_servers"] == "broker:9092"
    assert [t for t, *_ in p.sent[:120]] == [TOPIC_PRODUCTS] * 120
    assert {t for t, *_ in p.sent[120:]} >= {TOPIC_ORDERS, TOPIC_PAGEVIEWS, TOPIC_LOGISTICS}
    assert progress and progress[-1] == n
    for topic, key, value, sent_ms in p.sent:
        ev = decode(topic, value)
        if topic == TOPIC_ORDERS:
            expected: str = ev.order_id
        elif topic == TOPIC_LOGISTICS:
            expected = ev.order_id or ev.sku
        else:
            expected = ev.sku
        assert key == expected.encode()
        assert ev.ts <= sent_ms + 1_000  # never in the future


def test_run_simulation_stops_on_event(fake_producer: type[_FakeProducer]) -> None:
    async def main() -> int:
        stop = asyncio.Event()

        def progress(n: int) -> None:
            if n >= 1_000:
                stop.set()

        return await producer_mod.run_simulation(
            "b:9092", seed=1, rate=None, duration_s=None, speed=50_000.0, stop=stop,
            on_progress=progress,
        )

    n = asyncio.run(main())
    (p,) = fake_producer.instances
    assert 1_000 <= n == len(p.sent) < 1_000 + producer_mod.SEND_BATCH + 1
    assert p.stopped


def test_run_simulation_rate_cap(fake_producer: type[_FakeProducer]) -> None:
    t0 = time.monotonic()
    n = asyncio.run(
        producer_mod.run_simulation(
            "b:9092", seed=1, rate=1_000.0, duration_s=1.0, speed=100_000.0
        )
    )
    elapsed = time.monotonic() - t0
    assert elapsed < 3.0
    # the cap is an upper bound; how many get through in a second depends on the load
    assert 0 < n <= 1_000 * elapsed + 100 + 1  # burst of a tenth of a second


def test_run_simulation_real_time_after_backfill(fake_producer: type[_FakeProducer]) -> None:
    """The simulated clock catches up with the wall clock, then runs in real time."""
    now = time.time_ns() // 1_000_000
    n = asyncio.run(
        producer_mod.run_simulation(
            "b:9092", seed=1, rate=None, duration_s=1.5, speed=10_000.0,
            start_ms=now - 10 * 60_000,
        )
    )
    (p,) = fake_producer.instances
    assert n == len(p.sent) > 120
    stamps = [(decode(t, v).ts, ms) for t, _, v, ms in p.sent[120:]]
    assert all(ts <= ms + 1_000 for ts, ms in stamps)
    assert max(ts for ts, _ in stamps) > now - 15_000  # caught up with the present
