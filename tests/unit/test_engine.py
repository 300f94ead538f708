"""The demand engine against the plain-Python oracle, without Kafka or ClickHouse."""

from __future__ import annotations

import random
from typing import Any

import orjson
import pytest

from streams.core.dedup import id_hash
from streams.core.engine import (
    Checkpoint,
    DemandEngine,
    EngineConfig,
    FlushBatch,
    Record,
    visitor_base_sizes,
)
from streams.core.kanon import shop_tag
from tests import oracle
from tests.helpers.engine import balanced, process

T0 = 1_794_398_400_000  # 2026-11-11T12:00:00Z
PRODUCTS = [
    {
        "event_id": "p1",
        "event_type": "product_upsert",
        "ts": 0,
        "shop_id": "s",
        "sku": "A",
        "factory_id": "F1",
        "category": "袜子",
        "color": "雾霾蓝",
        "size": "1-3岁",
        "list_price": 15.0,
        "lead_time_days": 7,
        "moq": 100,
    },
    {
        "event_id": "p2",
        "event_type": "product_upsert",
        "ts": 0,
        "shop_id": "s",
        "sku": "B",
        "factory_id": "F2",
        "category": "漱口杯",
        "color": "樱花粉",
        "size": "均码",
        "list_price": 120.0,
        "lead_time_days": 20,
        "moq": 500,
    },
]


def _order(i: int, ts: int, kind: str = "order_placed", sku: str = "A") -> dict[str, Any]:
    return {
        "event_id": f"o{i}-{kind}",
        "event_type": kind,
        "ts": ts,
        "shop_id": "s",
        "order_id": f"o{i}",
        "region": "浙江" if i % 2 else "广东",
        "buyer_id": "b",
        "lines": [
            {"sku": sku, "qty": 1 + i % 3, "unit_price": 9.99},
            {"sku": "B", "qty": 1, "unit_price": 118.5},
        ],
    }


def _engine(**cfg: Any) -> DemandEngine:
    eng = DemandEngine(EngineConfig(**cfg))
    for i, p in enumerate(PRODUCTS):
        assert eng.apply_product(Record("shop.products", 0, i, None, None, orjson.dumps(p))) is None
    return eng


def _records(events: list[tuple[str, dict[str, Any]]], partitions: int = 3) -> list[Record]:
    offsets = [0] * partitions
    recs = []
    for i, (topic, ev) in enumerate(events):
        p = i % partitions
        recs.append(Record(topic, p, offsets[p], T0 + 10**9, None, orjson.dumps(ev)))
        offsets[p] += 1
    return recs


class FakeStore:
    """Keeps the latest version per (source partition, cell), like the ClickHouse view."""

    def __init__(self) -> None:
        self.rows: dict[tuple[Any, ...], tuple[int, list[int]]] = {}
        self.checkpoints: list[Checkpoint] = []
        self.dedup: list[tuple[str, int, int, int, int]] = []

    def write(self, batch: FlushBatch) -> None:
        # expanded like c2m.dedup_feed_expand: one (topic, partition, hour, hash, version) per id
        self.dedup.extend((t, p, b, h, v) for t, p, b, ids, v in batch.dedup_rows for h in ids)
        for row in batch.rows:
            key, measures, version = row[:9], list(row[9:15]), row[15]
            if key not in self.rows or self.rows[key][0] <= version:
                self.rows[key] = (version, measures)
        self.checkpoints.extend(batch.checkpoints)

    def view(self) -> dict[tuple[Any, ...], dict[str, float]]:
        out: dict[tuple[Any, ...], list[int]] = {}
        for key, (_, m) in self.rows.items():
            acc = out.setdefault(key[2:], [0] * 6)
            for i, v in enumerate(m):
                acc[i] += v
        return {
            k: {
                "orders": v[0],
                "units": v[1],
                "gmv": v[2] / 10_000,
                "cancelled_units": v[3],
                "returned_units": v[4],
                "pageviews": v[5],
            }
            for k, v in out.items()
        }


def _assert_equal(got: dict[Any, dict[str, float]], want: dict[Any, dict[str, float]]) -> None:
    assert set(got) == set(want)
    for key, w in want.items():
        g = got[key]
        for m in ("orders", "units", "cancelled_units", "returned_units", "pageviews"):
            assert g[m] == w[m], (key, m)
        assert abs(g["gmv"] - w["gmv"]) <= 1e-6 * max(1.0, abs(w["gmv"])), key


def _mixed_events(n: int, seed: int = 1) -> list[tuple[str, dict[str, Any]]]:
    rng = random.Random(seed)
    events: list[tuple[str, dict[str, Any]]] = []
    for i in range(n):
        ts = T0 + i * 7_000 + rng.randint(-180_000, 180_000)
        events.append(("shop.orders", _order(i, ts, sku=rng.choice("AAB") if i % 11 else "ZZZ")))
        if i % 10 == 0:
            events.append(("shop.orders", _order(i, ts + 60_000, "order_cancelled")))
        events.append(
            (
                "shop.pageviews",
                {
                    "event_id": f"v{i}",
                    "event_type": "page_view",
                    "ts": ts,
                    "shop_id": f"s{i % 3}",
                    "sku": "A",
                    "visitor_id": f"u{i % 50}",
                    "region": "浙江",
                },
            )
        )
        if i % 15 == 0:
            events.append(
                (
                    "shop.logistics",
                    {
                        "event_id": f"r{i}",
                        "event_type": "returned",
                        "ts": ts + 3_600_000,
                        "shop_id": f"s{i % 4}",
                        "sku": "B",
                        "qty": 1,
                        "region": "广东",
                    },
                )
            )
    return events


def test_engine_matches_oracle_whatever_the_batching() -> None:
    events = _mixed_events(3000)
    want = oracle.demand(PRODUCTS, events)
    for batch_size in (1, 97, 10_000):
        eng, store = _engine(), FakeStore()
        recs = _records(events)
        for i in range(0, len(recs), batch_size):
            out = process(eng, recs[i : i + batch_size])
            assert not out.rejected and not out.late
            if i % (batch_size * 5) == 0:
                batch = eng.flush_batch()
                store.write(batch)
                eng.flushed(batch)
        batch = eng.flush_batch()
        store.write(batch)
        eng.flushed(batch)
        _assert_equal(store.view(), want)


def test_duplicates_count_once_and_ledger_balances() -> None:
    events = _mixed_events(500)
    doubled = [e for ev in events for e in (ev, ev)]
    eng, store = _engine(), FakeStore()
    process(eng, _records(doubled, partitions=1))
    batch = eng.flush_batch()
    store.write(batch)
    _assert_equal(store.view(), oracle.demand(PRODUCTS, events))
    lg = eng.states[("shop.orders", 0)].ledger
    assert lg.duplicates > 0 and balanced(lg)


def test_unknown_sku_counts_under_unknown() -> None:
    eng = _engine()
    process(eng, _records([("shop.orders", _order(11, T0, sku="NOPE"))], partitions=1))
    keys = {k[2:7] for k in eng.states[("shop.orders", 0)].cells.snapshot()}
    assert ("unknown", "unknown", "unknown", "unknown", "浙江") in keys
    assert eng.states[("shop.orders", 0)].ledger.unknown_sku_lines == 1


def test_late_beyond_horizon_and_future_events() -> None:
    eng = _engine(correction_horizon_ms=3_600_000, allowed_lateness_ms=600_000)
    recs = _records(
        [
            ("shop.orders", _order(1, T0 + 10 * 3_600_000)),
            ("shop.orders", _order(2, T0 + 9 * 3_600_000)),  # 1 h late: within horizon + lateness
            ("shop.orders", _order(3, T0)),  # 10 h late: beyond the horizon
            ("shop.orders", _order(4, T0 + 10**9 + 301_000)),  # ahead of the record time
        ],
        partitions=1,
    )
    out = process(eng, recs)
    assert [r.reason for r in out.rejected] == ["future_ts"]
    assert [e.event_id for e in out.late] == ["o3-order_placed"]
    lg = eng.states[("shop.orders", 0)].ledger
    assert (lg.processed, lg.late, lg.dead_lettered, lg.corrected) == (2, 1, 1, 1)
    assert balanced(lg)


def test_invalid_records_are_rejected_with_coordinates() -> None:
    eng = _engine()
    recs = [
        Record("shop.orders", 2, 40, None, b"k", b"{bad"),
        Record("shop.orders", 2, 41, None, b"k", orjson.dumps(_order(1, T0))),
    ]
    out = process(eng, recs)
    assert len(out.rejected) == 1
    rej = out.rejected[0]
    assert (rej.reason, rej.record.partition, rej.record.offset) == ("invalid_json", 2, 40)
    assert eng.states[("shop.orders", 2)].position == 42


def test_restore_from_checkpoint_continues_exactly() -> None:
    events = _mixed_events(1500, seed=3)
    recs = _records(events)
    want = oracle.demand(PRODUCTS, events)
    eng, store = _engine(), FakeStore()
    half = len(recs) // 2
    process(eng, recs[:half])
    batch = eng.flush_batch()
    store.write(batch)
    eng.flushed(batch)
    process(eng, recs[half : half + 200])  # processed but never flushed: lost in the "crash"

    fresh = _engine()
    for cp in batch.checkpoints:
        rows = [
            ((k[2], k[3], *k[4:9]), v)
            for k, (ver, v) in store.rows.items()
            if (k[0], k[1]) == (cp.topic, cp.partition) and ver <= cp.position
        ]
        ids = [
            (b, h)
            for t, p, b, h, ver in store.dedup
            if (t, p) == (cp.topic, cp.partition) and ver <= cp.position
        ]
        fresh.restore(cp, rows, ids)
    resume = [r for r in recs[half:] if r.offset >= fresh.states[(r.topic, r.partition)].position]
    # producer retries of events counted before the crash arrive after the restart
    redelivered = [
        Record(r.topic, r.partition, 10_000 + i, r.timestamp, r.key, r.value)
        for i, r in enumerate(recs[:50])
    ]
    out = process(fresh, resume + sorted(redelivered, key=lambda r: (r.topic, r.partition)))
    assert sum(st.ledger.duplicates for st in fresh.states.values()) == 50
    assert not out.rejected
    batch = fresh.flush_batch()
    store.write(batch)
    _assert_equal(store.view(), want)


def test_windows_beyond_the_horizon_are_evicted() -> None:
    eng = _engine(correction_horizon_ms=3_600_000, live_retention_ms=2 * 86_400_000)
    process(eng, _records([("shop.orders", _order(1, T0))], partitions=1))
    eng.flushed(eng.flush_batch())
    process(eng, _records([("shop.orders", _order(2, T0 + 3 * 86_400_000))], partitions=1))
    eng.flushed(eng.flush_batch())
    st = eng.states[("shop.orders", 0)]
    assert all(k[1] * 1000 >= T0 + 2 * 86_400_000 for k in st.cells.snapshot())
    # hourly and daily windows stay for the live retention, 5-minute ones only the horizon
    process(eng, _records([("shop.orders", _order(3, T0 + 4 * 86_400_000))], partitions=1)[:1])
    eng.flushed(eng.flush_batch())
    sizes_of_day3 = {k[0] for k in st.cells.snapshot() if k[1] * 1000 < T0 + 4 * 86_400_000}
    assert sizes_of_day3 == {3600, 86400}


def test_live_rollups_and_rolling_match_the_oracle() -> None:
    from tests.helpers.rollup import as_dict, merge_partitions, rolling, rollup

    events = _mixed_events(2000, seed=9)
    eng = _engine()
    process(eng, _records(events, partitions=3))
    want = oracle.demand(PRODUCTS, events)
    cells = merge_partitions(eng.states.values())
    by_cat_color = rollup(cells, ("category", "color"))
    expect: dict[tuple[Any, ...], float] = {}
    for (w, start, cat, color, _size, _band, _region), m in want.items():
        key = (w, start, cat, color)
        expect[key] = expect.get(key, 0) + m["units"]
    assert {k: v[1] for k, v in by_cat_color.items()} == expect
    as_of = (T0 // 1000) // 3600 * 3600 + 3 * 3600
    last_3h = rolling(cells, window_seconds=300, as_of_s=as_of, span_s=3 * 3600)
    expect_rolling: dict[tuple[Any, ...], float] = {}
    for (w, start, *cell), m in want.items():
        if w == 300 and as_of - 3 * 3600 <= start < as_of:
            expect_rolling[tuple(cell)] = expect_rolling.get(tuple(cell), 0) + m["net_units"]
    assert expect_rolling
    assert {k: as_dict(v)["net_units"] for k, v in last_3h.items()} == expect_rolling
    with pytest.raises(ValueError):
        rollup(cells, ("colour",))


def test_overlapping_cuts_with_failed_writes_lose_nothing() -> None:
    """Flushes are cut while processing goes on; some writes fail and are handed back
    (``unflush``). What the successful writes stored equals the oracle: measures, unique
    visitors (visitor rows), dedup ids and the final checkpoints."""
    events = _mixed_events(2000, seed=9)
    want_shops: dict[tuple[Any, ...], dict[str, set[str]]] = {}
    want = oracle.demand(PRODUCTS, events, shops=want_shops)
    recs = _records(events)
    rng = random.Random(4)
    eng, store = _engine(), FakeStore()
    visitors: dict[tuple[Any, ...], set[int]] = {}
    shops: dict[tuple[Any, ...], set[int]] = {}
    in_flight: FlushBatch | None = None
    failed = 0

    def settle(batch: FlushBatch) -> None:
        nonlocal failed
        if rng.random() < 0.4:
            failed += 1
            eng.unflush(batch)  # the write failed: nothing of it is stored
            return
        store.write(batch)
        for row in batch.visitor_rows:  # expanded like c2m.visitor_feed_expand does
            for w in (300, 3600, 86400):
                if w % row[0] == 0:
                    cell = (w, row[1] - row[1] % w, *row[2:7])
                    visitors.setdefault(cell, set()).update(row[7])
        for row in batch.shop_rows:  # expanded the same way by c2m.shop_feed_expand
            for w in (300, 3600, 86400):
                if w % row[0] == 0:
                    cell = (w, row[1] - row[1] % w, *row[2:7])
                    shops.setdefault(cell, set()).update(row[7])
        eng.flushed(batch)

    i = 0
    while i < len(recs):
        step = rng.randint(1, 150)
        process(eng, recs[i : i + step])  # applied while the previous cut is "written"
        i += step
        if in_flight is not None:
            settle(in_flight)
        in_flight = eng.flush_batch()
    settle(in_flight)
    while True:  # drain: retry until a cut is written and nothing is pending
        batch = eng.flush_batch()
        if not batch:
            break
        settle(batch)
    assert failed > 5
    _assert_equal(store.view(), want)
    assert {k: len(v) for k, v in visitors.items()} == {
        k: w["unique_visitors"] for k, w in want.items() if w["pageviews"]
    }
    # every cell's contributors: the shops that sold, were viewed, had cancels or returns
    assert shops == {
        k: {shop_tag(id_hash(s), fam) for fam, role in enumerate(("orders", "views", "returns"))
            for s in c[role]}
        for k, c in want_shops.items()
    }
    assert len({h for tags in shops.values() for h in tags}) > 2
    assert len(store.dedup) == len({(t, p, h) for t, p, _, h, _ in store.dedup})
    assert len(store.dedup) == sum(st.ledger.processed for st in eng.states.values())
    last = {(c.topic, c.partition): c.position for c in store.checkpoints}
    assert last == {tp: st.position for tp, st in eng.states.items()}


def test_visitor_rows_are_written_for_the_base_window_sizes_only() -> None:
    assert visitor_base_sizes((300, 3600, 86400)) == [300]
    assert visitor_base_sizes((86400, 300)) == [300]
    assert visitor_base_sizes((7200, 10800, 21600)) == [7200, 10800]
    eng = _engine()
    process(eng, _records(_mixed_events(50), partitions=1))
    batch = eng.flush_batch()
    assert batch.visitor_rows and {r[0] for r in batch.visitor_rows} == {300}
    assert {r[2] for r in batch.rows if r[8] == "浙江"} == {300, 3600, 86400}


def test_a_catalog_tombstone_deletes_the_product() -> None:
    eng = _engine()
    assert eng.catalog.lookup("A", T0) is not None
    gen = eng.catalog.generation
    assert eng.apply_product(Record("shop.products", 0, 9, T0, b"A", None)) is None
    assert eng.catalog.lookup("A", T0) is None and eng.catalog.generation > gen
    assert eng.products_deleted == 1
    assert eng.pending_products[-1][0] == "A" and eng.pending_products[-1][10] == 1
    # demand of the deleted SKU counts under unknown from now on
    process(eng, _records([("shop.orders", _order(1, T0))], partitions=1))
    cells = {k[2] for k in eng.states[("shop.orders", 0)].cells.snapshot()}
    assert "unknown" in cells and "袜子" not in cells
    # a tombstone without a key names no product: rejected, nothing deleted
    rejected = eng.apply_product(Record("shop.products", 0, 10, T0, None, None))
    assert rejected is not None and rejected.reason == "tombstone"
    assert eng.catalog.lookup("B", T0) is not None


@pytest.mark.parametrize("native", [True, False])
def test_a_batchs_counts_are_what_it_added_to_the_ledgers(native: bool) -> None:
    """BatchOutcome.counts per topic (what c2m_events_total and c2m_unknown_sku_lines_total
    move by) sum, over batches, to the partitions' ledgers: duplicates, a malformed record,
    late events and unknown SKUs (``ZZZ``) included, with the compiled lanes or without."""
    from streams.core.engine import OUTCOME_FIELDS

    events = _mixed_events(600, seed=3)
    events += events[100:160]  # re-sent: duplicates
    events.append(("shop.orders", {"event_id": "bad"}))  # dead-lettered
    old = {**events[2][1], "event_id": "old", "ts": T0 - 3 * 86_400_000}
    events.append(("shop.pageviews", old))  # behind the 48 h horizon: late
    eng = _engine(native=native)
    recs = _records(events)
    totals: dict[str, list[int]] = {}
    for i in range(0, len(recs), 97):
        by_tp: dict[tuple[str, int], list[Record]] = {}
        for r in recs[i : i + 97]:
            by_tp.setdefault((r.topic, r.partition), []).append(r)
        out = eng.process_runs([(t, p, run) for (t, p), run in by_tp.items()])
        for topic, added in out.counts.items():
            acc = totals.setdefault(topic, [0] * len(OUTCOME_FIELDS))
            for j, n in enumerate(added):
                acc[j] += n
    want: dict[str, list[int]] = {}
    for (topic, _), st in eng.states.items():
        acc = want.setdefault(topic, [0] * len(OUTCOME_FIELDS))
        for j, name in enumerate(OUTCOME_FIELDS):
            acc[j] += getattr(st.ledger, name)
    assert totals == want
    orders, views = totals["shop.orders"], totals["shop.pageviews"]
    assert orders[OUTCOME_FIELDS.index("dead_lettered")] == 1
    assert orders[OUTCOME_FIELDS.index("duplicates")] > 0
    assert orders[OUTCOME_FIELDS.index("unknown_sku_lines")] > 0
    assert views[OUTCOME_FIELDS.index("late")] == 1, views
    assert sum(t[0] for t in totals.values()) == len(recs)
