"""Issue 3 end to end: duplicates, shuffling, late events inside and beyond the correction
horizon, cancels, returns, page views and unique visitors against the plain-Python oracle;
replay into a fresh database gives identical rows; idle partitions do not hold windows open.
"""

from __future__ import annotations

import random
import zlib
from typing import Any

import orjson
import pytest
from kafka import KafkaProducer

from streams.sim.model import generate_history
from tests import oracle

pytestmark = pytest.mark.integration

START_MS = 1_793_491_200_000  # 2026-11-01T00:00:00Z
PARTITIONS = 4
HORIZON_H = 1
ALL_MEASURES = (
    "orders",
    "units",
    "gmv",
    "cancelled_units",
    "returned_units",
    "net_units",
    "pageviews",
    "unique_visitors",
    "conversion_rate",
)
ENV = {"C2M_CORRECTION_HORIZON_HOURS": str(HORIZON_H)}


def _scenario(
    seed: int,
) -> tuple[list[dict[str, Any]], list[tuple[str, int, bytes, dict[str, Any]]]]:
    """Products, and (topic, partition, key, value) in delivery order."""
    rng = random.Random(seed)
    history = generate_history(seed, START_MS, 3.0, orders_per_hour=700)
    products = [e.value for e in history if e.topic == "shop.products"]
    demand = [e for e in history if e.topic != "shop.products"]
    # shuffle within 5 minutes of event time
    demand.sort(key=lambda e: e.ts_ms + rng.uniform(0, 300_000))
    items = [
        (e.topic, zlib.crc32(e.key.encode()) % PARTITIONS, e.key.encode(), e.value) for e in demand
    ]
    # late events: ~1% delayed by 30-50 minutes of stream time (behind the watermark, inside
    # the 1 h horizon), and the first 40 from the first 15 minutes moved to the very end
    # (more than horizon + lateness behind: beyond the horizon)
    early = [i for i, it in enumerate(items) if oracle.ts_ms(it[3]["ts"]) < START_MS + 900_000]
    beyond = set(rng.sample(early, 40))
    per_min = len(items) / 180
    moved: list[tuple[int, tuple[str, int, bytes, dict[str, Any]]]] = []
    for i, it in enumerate(items):
        if i in beyond:
            moved.append((len(items) + i, it))
        elif rng.random() < 0.01:
            moved.append((i + int(per_min * rng.uniform(30, 50)), it))
    moved_ids = {id(it) for _, it in moved}
    ordered = [(float(i), it) for i, it in enumerate(items) if id(it) not in moved_ids]
    ordered += [(pos + 0.5, it) for pos, it in moved]
    ordered.sort(key=lambda x: x[0])
    stream = [it for _, it in ordered]
    # 3% duplicate deliveries (producer retries: same key, same partition), a little later
    out: list[tuple[str, int, bytes, dict[str, Any]]] = []
    retries: list[tuple[int, tuple[str, int, bytes, dict[str, Any]]]] = []
    for i, it in enumerate(stream):
        out.append(it)
        if rng.random() < 0.03:
            retries.append((i + rng.randint(1, 200), it))
        while retries and retries[0][0] <= i:
            out.append(retries.pop(0)[1])
            retries.sort(key=lambda r: r[0])
    out.extend(it for _, it in retries)
    return products, out


def _produce(
    bootstrap: str,
    products: list[dict[str, Any]],
    items: list[tuple[str, int, bytes, dict[str, Any]]],
) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    for p in products:
        producer.send("shop.products", key=p["sku"].encode(), value=orjson.dumps(p))
    producer.flush()
    for topic, partition, key, value in items:
        producer.send(topic, key=key, value=orjson.dumps(value), partition=partition)
    producer.flush()
    producer.close()


def _rows(worker: Any) -> list[tuple[Any, ...]]:
    return worker.query(
        "SELECT window_seconds, toUnixTimestamp(window_start), category, color, size, price_band,"
        " region, orders, units, gmv, cancelled_units, returned_units, net_units, pageviews, "
        "unique_visitors, conversion_rate, is_final FROM c2m.demand_by_attribute ORDER BY ALL"
    )


def _check_rollups_and_rolling(
    worker: Any,
    want: dict[tuple[Any, ...], dict[str, float]],
    products: list[dict[str, Any]],
    items: list[tuple[str, int, bytes, dict[str, Any]]],
    late: list[dict[str, Any]],
) -> None:
    """The documented roll-up queries and the rolling view against the oracle."""
    # category x colour over all sizes, price bands and regions, hourly
    got = worker.query(
        "SELECT toUnixTimestamp(window_start), category, color, sum(units), sum(net_units) "
        "FROM c2m.demand_by_attribute WHERE window_seconds = 3600 GROUP BY ALL"
    )
    expect: dict[tuple[Any, ...], list[float]] = {}
    for (w, start, cat, color, *_), m in want.items():
        if w == 3600:
            acc = expect.setdefault((start, cat, color), [0, 0])
            acc[0] += m["units"]
            acc[1] += m["net_units"]
    assert {tuple(r[:3]): [r[3], r[4]] for r in got} == expect
    # unique visitors per category over all other dimensions: from visitor_cells
    got_uv = worker.query(
        "SELECT toUnixTimestamp(window_start), category, uniqExact(visitor_hash) "
        "FROM c2m.visitor_cells WHERE window_seconds = 3600 GROUP BY ALL"
    )
    catalog = {p["sku"]: p["category"] for p in products}
    excluded = {e["event_id"] for e in late}
    visitors: dict[tuple[Any, ...], set[str]] = {}
    for topic, _, _, v in items:
        if topic == "shop.pageviews" and v["event_id"] not in excluded:
            t = oracle.ts_ms(v["ts"]) // 1000
            visitors.setdefault((t - t % 3600, catalog[v["sku"]]), set()).add(v["visitor_id"])
    assert {tuple(r[:2]): r[2] for r in got_uv} == {k: len(s) for k, s in visitors.items()}
    # rolling view: last 1 h of 5-minute windows as of the newest event time
    rolling = worker.query(
        "SELECT toUnixTimestamp(as_of), category, color, size, price_band, region, units, "
        "pageviews FROM c2m.demand_rolling WHERE horizon = '1h'"
    )
    assert rolling
    as_of = rolling[0][0]
    expect_r: dict[tuple[Any, ...], list[float]] = {}
    for (w, start, *cell), m in want.items():
        if w == 300 and as_of - 3600 <= start < as_of:
            acc = expect_r.setdefault(tuple(cell), [0, 0])
            acc[0] += m["units"]
            acc[1] += m["pageviews"]
    assert {tuple(r[1:6]): [r[6], r[7]] for r in rolling} == expect_r


@pytest.mark.slow
def test_every_measure_equals_oracle_and_replay_is_identical(
    broker: Any, worker_factory: Any
) -> None:
    products, items = _scenario(seed=23)
    _produce(broker.bootstrap, products, items)
    late: list[dict[str, Any]] = []
    want = oracle.demand(
        products, [(t, p, v) for t, p, _, v in items], horizon_ms=HORIZON_H * 3_600_000, late=late,
        timezone=oracle.MARKET_TZ,
    )
    n_dupes = len(items) - len({v["event_id"] for *_, v in items})
    assert n_dupes > 0.02 * len(items) and len(late) >= 40

    first = worker_factory(**ENV).start()
    stats = first.wait_consumed(len(items), timeout=600)
    assert (stats["duplicates"], stats["late"], stats["dead_lettered"]) == (n_dupes, len(late), 0)
    assert stats["corrected"] > 100  # applied behind the watermark, inside the horizon
    assert first.stop() == 0
    rows = _rows(first)

    got = {tuple(r[:7]): dict(zip(ALL_MEASURES, r[7:16], strict=True)) for r in rows}
    assert set(got) == set(want)
    for key, w in want.items():
        g = got[key]
        for m in ALL_MEASURES:
            if m in ("gmv", "conversion_rate"):
                assert abs(g[m] - w[m]) <= 1e-6 * max(abs(w[m]), 1e-9), (key, m, g[m], w[m])
            else:
                assert g[m] == w[m], (key, m, g[m], w[m])
    _check_rollups_and_rolling(first, want, products, items, late)
    late_rows = first.query("SELECT event_id FROM c2m.late_events ORDER BY event_id")
    assert sorted(e["event_id"] for e in late) == [r[0] for r in late_rows]

    # replay every topic into an empty database with other batching and timing
    replay = worker_factory(
        **ENV, C2M_APP_ID="c2m-replay", C2M_BATCH_MAX_EVENTS="97", C2M_FLUSH_INTERVAL_SECONDS="0.2"
    ).start()
    replay.wait_consumed(len(items), timeout=600)
    assert replay.stop() == 0
    assert _rows(replay) == rows


@pytest.mark.slow
@pytest.mark.parametrize(("idle_s", "final"), [(900, 1), (30 * 86_400, 0)])
def test_idle_partitions_do_not_hold_windows_open(
    broker: Any, worker_factory: Any, idle_s: int, final: int
) -> None:
    product = {
        "event_id": "p",
        "event_type": "product_upsert",
        "ts": 0,
        "shop_id": "s",
        "sku": "A",
        "factory_id": "F",
        "category": "袜子",
        "color": "奶白",
        "size": "M",
        "list_price": 12.0,
        "lead_time_days": 5,
        "moq": 100,
    }

    def order(i: int, ts: int) -> dict[str, Any]:
        return {
            "event_id": f"o{i}",
            "event_type": "order_placed",
            "ts": ts,
            "shop_id": "s",
            "order_id": f"o{i}",
            "region": "浙江",
            "buyer_id": "b",
            "lines": [{"sku": "A", "qty": 1, "unit_price": 12.0}],
        }

    # partition 0 runs for 2 hours of event time; partition 1 stops after 5 minutes;
    # partitions 2 and 3 and the other topics never see an event
    items = [("shop.orders", 0, b"k0", order(i, START_MS + i * 60_000)) for i in range(120)]
    items += [("shop.orders", 1, b"k1", order(1000 + i, START_MS + i * 60_000)) for i in range(5)]
    _produce(broker.bootstrap, [product], items)
    worker = worker_factory(C2M_IDLE_PARTITION_SECONDS=str(idle_s)).start()
    worker.wait_consumed(len(items))
    assert worker.stop() == 0
    one_hour_in = START_MS // 1000 + 3600
    rows = worker.query(
        "SELECT is_final FROM c2m.demand_by_attribute WHERE window_seconds = 300 "
        "AND toUnixTimestamp(window_start) = {t:UInt32}",
        t=one_hour_in,
    )
    assert rows == [(final,)]
    progress = worker.query(
        "SELECT active_partitions, idle_partitions FROM c2m.event_time_progress"
    )
    assert progress == [((1, 1) if final else (2, 0))]
    last = worker.query(
        "SELECT max(window_start), argMax(is_final, window_start) "
        "FROM c2m.demand_by_attribute WHERE window_seconds = 300"
    )
    assert last[0][1] == 0  # the newest window is never final before the watermark passes it


@pytest.mark.slow
def test_double_eleven_is_one_local_day_and_replays_identically(
    broker: Any, worker_factory: Any
) -> None:
    """Issue 23: events from 11-10 22:00 to 11-12 02:00 China time (a 双11 promotion from
    local midnight) through a worker in Asia/Shanghai: the daily row of 11-11 holds exactly
    the events of 11-11 local time, every row equals the oracle, a plain SELECT of
    '2026-11-11' finds it, and a replay into a fresh database gives identical rows."""
    start = 1_794_319_200_000  # 2026-11-10T14:00Z = 22:00 China time
    midnight = 1_794_326_400  # 2026-11-11T00:00+08:00
    history = generate_history(31, start, 28.0, orders_per_hour=120,
                               promo_start_ms=midnight * 1000, promo_hours=2.0)
    products = [e.value for e in history if e.topic == "shop.products"]
    items = [(e.topic, zlib.crc32(e.key.encode()) % PARTITIONS, e.key.encode(), e.value)
             for e in history if e.topic != "shop.products"]
    assert min(oracle.ts_ms(v["ts"]) for *_, v in items) < midnight * 1000 - 7_200_000 + 60_000
    assert max(oracle.ts_ms(v["ts"]) for *_, v in items) > (midnight + 86_400) * 1000
    _produce(broker.bootstrap, products, items)
    want = oracle.demand(products, [(t, p, v) for t, p, _, v in items],
                         timezone=oracle.MARKET_TZ)
    worker = worker_factory().start()
    worker.wait_consumed(len(items), timeout=600)
    assert worker.stop() == 0
    rows = _rows(worker)
    got = {tuple(r[:7]): r[7:9] for r in rows}
    assert got == {k: (w["orders"], w["units"]) for k, w in want.items()}
    # the daily rows: 11-10 (its last two hours), 11-11 (whole), 11-12 (two hours)
    assert sorted({r[1] for r in rows if r[0] == 86_400}) == [
        midnight - 86_400, midnight, midnight + 86_400]
    day = worker.query(
        "SELECT sum(units), sum(orders), any(tz) FROM c2m.demand_by_attribute "
        "WHERE window_seconds = 86400 AND window_start = '2026-11-11 00:00:00'")
    units_1111 = sum(
        line["qty"] for t, _, _, v in items if v["event_type"] == "order_placed"
        and midnight * 1000 <= oracle.ts_ms(v["ts"]) < (midnight + 86_400) * 1000
        for line in v["lines"])
    assert day[0][0] == units_1111 and day[0][2] == oracle.MARKET_TZ
    # ... and it is the sum of the day's 24 hourly rows
    hourly = worker.query(
        "SELECT sum(units) FROM c2m.demand_by_attribute WHERE window_seconds = 3600 "
        "AND toDate(window_start) = '2026-11-11'")
    assert hourly[0][0] == units_1111
    replay = worker_factory(C2M_APP_ID="c2m-replay-1111", C2M_BATCH_MAX_EVENTS="301").start()
    replay.wait_consumed(len(items), timeout=600)
    assert replay.stop() == 0
    assert _rows(replay) == rows
