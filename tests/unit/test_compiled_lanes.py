"""The compiled lanes (``streams/core/_lanes.c``) against their references.

- their BLAKE2b-64 is hashlib's (the dedup ids are persisted: the values must not move);
- their RFC 3339 parser answers what ``schemas.fastpath.fast_event_time`` answers;
- their decoders accept only what the contract decoder (pydantic) accepts, with equal
  values (simulator corpus, mutated corpus, hand-made edge cases);
- the engine with them leaves exactly the state, flush batches, dead letters and late
  events that its Python paths leave (``EngineConfig(native=False)``), over duplicates,
  late and out-of-order events, rejections, catalog changes inside a grain, unknown SKUs,
  records without a Kafka timestamp, and flush cuts that fail and are written again.
"""

from __future__ import annotations

import hashlib
import random
import re
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.contract import ContractViolation, decode
from schemas.fastpath import fast_event_time
from streams.core import _lanes as lane
from streams.core.config import EngineConfig
from streams.core.dedup import BUCKET_MS, Deduplicator, id_hash
from streams.core.demand import PAGEVIEWS, CellHashes, Cells, price_e4
from streams.core.engine import DemandEngine, Record
from streams.core.inventory import SKU_COUNT_TS, SKU_PAGEVIEWS, SkuHours, utc_hour
from streams.sim.model import generate_history
from tests.helpers.engine import balanced, process
from tests.helpers.mutants import mutants, ts_strings

T0 = 1_793_491_200_000
FIELDS = ("event_id", "ts", "sku", "visitor_id", "region")


@pytest.fixture(scope="module")
def corpus() -> list[tuple[str, bytes]]:
    hist = generate_history(11, T0, 1.5, orders_per_hour=1500)
    return [(e.topic, orjson.dumps(e.value)) for e in hist]


# ------------------------------------------------------------------ hashing, times
@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600))
def test_id_hash_is_blake2b_64_little_endian(data: bytes) -> None:
    want = int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little")
    assert lane.id_hash(data) == want


@pytest.mark.parametrize("n", [0, 1, 127, 128, 129, 255, 256, 257, 512])
def test_id_hash_at_block_edges(n: int) -> None:
    data = bytes(range(256)) * 3
    want = int.from_bytes(hashlib.blake2b(data[:n], digest_size=8).digest(), "little")
    assert lane.id_hash(data[:n]) == want


@settings(max_examples=1500, deadline=None)
@given(st.one_of(ts_strings, st.text(max_size=40)))
def test_event_time_answers_what_fast_event_time_answers(value: str) -> None:
    assert lane.event_time(value.encode()) == fast_event_time(value)


@pytest.mark.parametrize("value", [
    "2026-11-11T12:00:00Z", "2024-02-29T00:00:00.123456789+08:00", "2023-02-29T00:00:00Z",
    "2026-11-11 12:00:00.1z", "2026-11-11T12:00:00.1234567890Z", "2026-11-11T12:00:00+23:59",
    "2026-11-11T12:00:00+24:00", "1970-01-01T00:00:01Z", "1970-01-01T00:00:00.999Z",
    "2242-03-16T12:56:31Z", "2242-03-16T12:56:32Z", "0001-01-01T00:00:00Z",
    "2026-11-11T12:00:00Z ", "2026-11-11T12:00:00", "2026-11-11T12:00:00.Z",
    "２０２６-11-11T12:00:00Z", "2026-11-11T12:00:00+08:00x", "2000-12-31T23:59:59-00:00",
])
def test_event_time_edge_cases(value: str) -> None:
    assert lane.event_time(value.encode()) == fast_event_time(value)


# ------------------------------------------------------------------ the decoders
#: per topic: the lane's decoder alone, and what it must answer, read off the contract's
#: event (pydantic, the reference)
_DECODERS: dict[str, tuple[Any, Any]] = {
    "shop.pageviews": (
        lane.decode_pageview, lambda ev: (ev.event_id, ev.ts, ev.sku, ev.visitor_id, ev.region)
    ),
    "shop.logistics": (lane.decode_logistics, lambda ev: (ev.event_id, ev.ts, ev.event_type)),
    "shop.orders": (
        lane.decode_order,
        lambda ev: (ev.event_id, ev.ts, ev.event_type, ev.region,
                    [(ln.sku, ln.qty, ln.unit_price, ln.qty * price_e4(ln.unit_price))
                     for ln in ev.lines]),
    ),
}


def check_topic(topic: str, raw: bytes) -> bool:
    """The lane's decoder says "not sure", or the contract accepts with equal values.
    Returns "the lane took it"."""
    lane_decode, want_of = _DECODERS[topic]
    got = lane_decode(raw)
    if got is None:
        return False
    try:
        ev = decode(topic, raw)
    except ContractViolation as exc:  # pragma: no cover - the failure looked for
        raise AssertionError(f"the lane accepted what the contract rejects: {exc}") from None
    want = want_of(ev)
    assert got == want, (got, want)
    if topic == "shop.orders":  # 20 == 20.0: the price must be a float as pydantic's
        assert all(type(line[2]) is float for line in got[4])
    if topic == "shop.pageviews":  # the dedup id is the persisted hash of the contract's id
        assert lane.id_hash(got[0].encode()) == int.from_bytes(
            hashlib.blake2b(ev.event_id.encode(), digest_size=8).digest(), "little")
    return True


def check(raw: bytes) -> bool:
    return check_topic("shop.pageviews", raw)


def check_logistics(raw: bytes) -> bool:
    return check_topic("shop.logistics", raw)


def check_order(raw: bytes) -> bool:
    return check_topic("shop.orders", raw)


@pytest.mark.parametrize(("topic", "minimum"), [
    ("shop.pageviews", 1000), ("shop.logistics", 500), ("shop.orders", 200),
])
def test_simulator_messages_are_all_taken(
    corpus: list[tuple[str, bytes]], topic: str, minimum: int
) -> None:
    msgs = [raw for t, raw in corpus if t == topic]
    assert len(msgs) > minimum
    assert all(check_topic(topic, raw) for raw in msgs)
    # other topics' messages are never taken for this one's
    lane_decode = _DECODERS[topic][0]
    assert not any(lane_decode(raw) for t, raw in corpus if t != topic)


@pytest.mark.parametrize(("topic", "seed", "minimum"), [
    ("shop.pageviews", 17, 10_000), ("shop.logistics", 19, 5_000), ("shop.orders", 29, 2_000),
])
def test_mutated_messages_are_taken_only_when_the_contract_agrees(
    corpus: list[tuple[str, bytes]], topic: str, seed: int, minimum: int
) -> None:
    rng = random.Random(seed)
    msgs = [raw for t, raw in corpus if t == topic]
    taken = total = 0
    for raw in rng.sample(msgs, min(1500, len(msgs))):
        for mutant in mutants(topic, raw, rng):
            total += 1
            taken += check_topic(topic, mutant)
    assert total > minimum and 0 < taken < total


def _logistics(**over: Any) -> dict[str, Any]:
    ev: dict[str, Any] = {"event_id": "e1", "ts": T0, "shop_id": "s", "event_type": "shipped",
                          "sku": "A", "qty": 2, "order_id": "o", "region": "浙江"}
    ev.update(over)
    return ev


@pytest.mark.parametrize("ev", [
    _logistics(), _logistics(event_type="stock_level"), _logistics(qty=0),
    _logistics(qty=1_000_000), _logistics(qty=1_000_001), _logistics(qty=None),
    _logistics(reason=""), _logistics(reason="尺码偏小" * 128), _logistics(reason="x" * 513),
    _logistics(region=""), _logistics(order_id=None), _logistics(factory_id="F1"),
    _logistics(event_type="restock_received", factory_id="F1"), _logistics(on_hand=5),
    {k: v for k, v in _logistics(event_type="stock_level", on_hand=0).items() if k != "qty"},
    {k: v for k, v in _logistics(event_type="stock_level", on_hand=10**9 + 1).items()
     if k != "qty"},
    {k: v for k, v in _logistics().items() if k != "qty"}, _logistics(event_type="teleported"),
    _logistics(event_type="page_view"), _logistics(qty=2.0), _logistics(qty="2"),
])
def test_logistics_edge_cases_agree(ev: dict[str, Any]) -> None:
    check_logistics(orjson.dumps(ev))


def _order(*lines: dict[str, Any], **over: Any) -> dict[str, Any]:
    ev: dict[str, Any] = {
        "event_id": "o1", "ts": T0, "shop_id": "s", "event_type": "order_placed",
        "order_id": "O1", "region": "浙江", "buyer_id": "b",
        "lines": list(lines) or [{"sku": "A", "qty": 2, "unit_price": 18.9}]}
    ev.update(over)
    return ev


_PRICES = [b"0", b"0.0", b"18.9", b"0.00005", b"0.00015", b"0.000049999", b"2.675", b"1e2",
           b"1000000000", b"1000000000.0", b"1000000000.0001", b"999999999.99995",
           b"12345678901234567890", b"0.1234567890123456789012", b"-1", b"-0.0", b"01.5",
           b"1.", b".5", b"1.5e0", b"NaN", b"\"9.9\"", b"true", b"null"]


@pytest.mark.parametrize("price", _PRICES)
def test_order_prices_agree(price: bytes) -> None:
    raw = (b'{"event_id":"e","ts":1793491200000,"shop_id":"s","event_type":"order_placed",'
           b'"order_id":"o","region":"r","buyer_id":"b","lines":[{"sku":"A","qty":3,'
           b'"unit_price":' + price + b"}]}")
    check_order(raw)


@pytest.mark.parametrize("ev", [
    _order(), _order(event_type="order_cancelled"), _order(event_type="order_refunded"),
    _order(*[{"sku": f"S{i}", "qty": 1, "unit_price": 1.5} for i in range(64)]),
    _order(*[{"sku": f"S{i}", "qty": 1, "unit_price": 1.5} for i in range(65)]),
    _order(lines=[]), _order(lines={}), _order(lines=None),
    _order({"sku": "A", "qty": 1_000_000, "unit_price": 1e9}),
    _order({"sku": "A", "qty": 0, "unit_price": 1}), _order({"sku": "A", "qty": 1}),
    _order({"sku": "A", "qty": 1, "unit_price": 1, "note": "x"}),
    _order({"sku": "", "qty": 1, "unit_price": 1}), _order(region="x" * 65),
    _order(buyer_id=None), _order(extra=[1, 2]),
    _order({"sku": "A", "qty": 2, "unit_price": 3.5}, {"sku": "A", "qty": 1, "unit_price": 3}),
])
def test_order_edge_cases_agree(ev: dict[str, Any]) -> None:
    check_order(orjson.dumps(ev))


def test_orders_taken_where_plainly_valid() -> None:
    for ev in (_order(), _order(event_type="order_cancelled"),
               _order(*[{"sku": f"S{i}", "qty": 1, "unit_price": 1.5} for i in range(64)]),
               _order({"sku": "A", "qty": 1000, "unit_price": 1e9})):
        assert check_order(orjson.dumps(ev)), ev
    # a GMV past 64 bits (10**6 x 10**13) is left to Python, whose ints do not overflow
    assert lane.decode_order(orjson.dumps(
        _order({"sku": "A", "qty": 1_000_000, "unit_price": 1e9}))) is None
    raw = orjson.dumps(_order()).replace(b"18.9", b" 2.675 ")
    assert check_order(raw)


def test_logistics_taken_where_plainly_valid() -> None:
    """Not only "not sure": the plain valid logistics forms are taken."""
    for ev in (_logistics(), _logistics(reason="尺码偏小" * 128), _logistics(qty=1_000_000),
               _logistics(event_type="restock_received", factory_id="F1")):
        assert check_logistics(orjson.dumps(ev)), ev


def _view(**over: Any) -> dict[str, Any]:
    ev: dict[str, Any] = {"event_id": "e1", "ts": T0, "shop_id": "s", "event_type": "page_view",
                          "sku": "A", "visitor_id": "v", "region": "浙江"}
    ev.update(over)
    return ev


@pytest.mark.parametrize("raw", [
    orjson.dumps(_view(region="雾" * 64)), orjson.dumps(_view(region="雾" * 65)),
    orjson.dumps(_view(region="🧦" * 64)), orjson.dumps(_view(region="🧦" * 65)),
    orjson.dumps(_view(event_id="x" * 128)), orjson.dumps(_view(event_id="x" * 129)),
    orjson.dumps(_view(event_id="")), orjson.dumps(_view(region="")),
    orjson.dumps(_view(sku="\u202e\u0085")), orjson.dumps(_view(ts=0)),
    orjson.dumps(_view(ts=253_402_300_799_999)), orjson.dumps(_view(ts=253_402_300_800_000)),
    orjson.dumps(_view(ts=-1)), orjson.dumps(_view(ts=1.0)), orjson.dumps(_view(ts=True)),
    orjson.dumps(_view(ts="2026-11-11T12:00:00+08:00")), orjson.dumps(_view(ts=None)),
    orjson.dumps(_view(sku=1)), orjson.dumps(_view(sku=None)), orjson.dumps(_view(sku=["A"])),
    orjson.dumps(_view(event_type="PAGE_VIEW")), orjson.dumps(_view(extra=1)),
    b' \t\r\n{"event_id" : "e","ts" :\n1,"shop_id":"s","event_type":"page_view",'
    b'"sku":"A","visitor_id":"v","region":"r"}\n ',
    b'{"event_id":"e","ts":01,"shop_id":"s","event_type":"page_view","sku":"A",'
    b'"visitor_id":"v","region":"r"}',
    b'{"event_id":"e","ts":1e3,"shop_id":"s","event_type":"page_view","sku":"A",'
    b'"visitor_id":"v","region":"r"}',
    b'{"event_id":"e","ts":-0,"shop_id":"s","event_type":"page_view","sku":"A",'
    b'"visitor_id":"v","region":"r"}',
    b'{"event_id":"e","event_id":"f","ts":1,"shop_id":"s","event_type":"page_view",'
    b'"sku":"A","visitor_id":"v","region":"r"}',
    b'{"event_id":"e","ts":1,"shop_id":"s","event_type":"page_view","sku":"A",'
    b'"visitor_id":"v","region":"r",}',
    b'{"event_id":"e","ts":1,"shop_id":"s","event_type":"page_view","sku":"A",'
    b'"visitor_id":"v","region":"r"}{}',
    b'{"event_id":"e","ts":1,"shop_id":"s","event_type":"page_view","sku":"A",'
    b'"visitor_id":"v"}',
    b'{"event_id":"\\u0065","ts":1,"shop_id":"s","event_type":"page_view","sku":"A",'
    b'"visitor_id":"v","region":"r"}',
    b'{"event_id":"e\x7f","ts":1,"shop_id":"s","event_type":"page_view","sku":"A",'
    b'"visitor_id":"v","region":"r"}',
    b'{"event_id":"e\x01","ts":1,"shop_id":"s","event_type":"page_view","sku":"A",'
    b'"visitor_id":"v","region":"r"}',
    # overlong "/", a UTF-16 surrogate, above U+10FFFF, a lone continuation byte, cut short
    *(b'{"event_id":"e","ts":1,"shop_id":"s","event_type":"page_view","sku":"A",'
      b'"visitor_id":"v","region":"' + bad + b'"}'
      for bad in (b"\xc0\xaf", b"\xe0\x80\xaf", b"\xed\xa0\x80", b"\xf4\x90\x80\x80",
                  b"\x80", b"\xe4\xb8", b"\xf0\x9f\xa7", b"\xef\xbf\xbf", b"\xf0\x90\x80\x80")),
    b"", b"{}", b"[]", b"null", b"{",
])
def test_edge_cases_agree(raw: bytes) -> None:
    check(raw)


def test_edge_cases_are_taken_where_plainly_valid() -> None:
    """Not only "not sure": the plain valid forms are taken (else the lane would be idle)."""
    for ev in (_view(region="雾" * 64), _view(region="🧦" * 64), _view(ts=0),
               _view(ts="2026-11-11T12:00:00+08:00"), _view(sku="\u202e\u0085"),
               _view(event_id="x" * 128)):
        assert check(orjson.dumps(ev)), ev
    for ev in (_view(region="雾" * 65), _view(extra=1), _view(ts=1.0), _view(sku=1)):
        assert lane.decode_pageview(orjson.dumps(ev)) is None, ev


# ------------------------------------------------------------------ the engine
def _snapshot(eng: DemandEngine) -> dict[Any, Any]:
    """Everything the engine holds per partition, comparable with ==."""
    out: dict[Any, Any] = {}
    for key, s in eng.states.items():
        out[key] = {
            "position": s.position, "max_ts": s.watermark.max_ts, "ledger": s.ledger,
            "cells": s.cells.snapshot(), "dirty": s.cells.marked(),
            "visitors": s.visitors.snapshot(), "shops": s.shops.snapshot(),
            "skus": s.skus.snapshot(), "sku_dirty": s.skus.marked(),
            "dedup": s.dedup.snapshot(), "dedup_ids": len(s.dedup), "held": len(s.cells),
            # entries name their SKU hour, their cells and those cells' visitor and shop
            # hashes by handles (indices in the compiled types, keys in the references):
            # compared by what they name
            "hot": {k: _named(s, e) for k, e in s.hot.items()},
            "hot_pv": {k: (e.generation, e.unknown_sku, s.skus.key_of(e.sku_hour),
                           *_named(s, e)) for k, e in s.hot_pv.items()},
        }
    return out


def _named(s: Any, e: Any) -> tuple[Any, Any, Any]:
    return (tuple(s.cells.key_of(h) for h in e.cells),
            tuple(s.visitors.key_of(h) for h in e.visitors),
            tuple(s.shops.key_of(h) for h in e.shops))


def _batch(b: Any) -> tuple[Any, ...]:
    return (sorted(b.rows), sorted(b.visitor_rows), sorted(b.shop_rows), sorted(b.dedup_rows),
            sorted(b.sku_rows),
            sorted(b.checkpoints, key=lambda c: (c.topic, c.partition)))


def _run_both(products: list[bytes], batches: list[list[Record]],
              between: dict[int, list[bytes]] | None = None,
              fail_every: int = 0) -> list[Any]:
    """Feed both engines the same batches (flush cuts after each; every fail_every-th cut
    fails and is handed back); return what each saw."""
    results = []
    for native in (True, False):
        eng = DemandEngine(EngineConfig(native=native))
        for i, raw in enumerate(products):
            eng.apply_product(Record("shop.products", 0, i, None, None, raw))
        seen: list[Any] = []
        for k, batch in enumerate(batches):
            for j, raw in enumerate((between or {}).get(k, [])):
                eng.apply_product(Record("shop.products", 0, 1000 + 10 * k + j, None, None, raw))
            out = process(eng, batch)
            seen.append((
                [(r.record.topic, r.record.partition, r.record.offset, r.reason, r.detail)
                 for r in out.rejected],
                [(e.record.offset, e.event_id, e.event_type, e.ts_ms, e.watermark_ms)
                 for e in out.late],
            ))
            cut = eng.flush_batch()
            seen.append(_batch(cut))
            if fail_every and k % fail_every == fail_every - 1:
                eng.unflush(cut)
            else:
                eng.flushed(cut)
            seen.append(_snapshot(eng))
        results.append(seen)
    return results


def _records(messages: list[tuple[str, bytes]], rng: random.Random, ref: int,
             partitions: int = 3) -> list[list[Record]]:
    offsets = [0] * partitions
    recs = []
    for topic, raw in messages:
        p = rng.randrange(partitions)
        t: int | None = ref
        if rng.random() < 0.01:
            t = None if rng.random() < 0.5 else -1  # no Kafka timestamp: the wall clock
        recs.append(Record(topic, p, offsets[p], t, None, raw))
        offsets[p] += 1
    recs.sort(key=lambda r: (r.topic, r.partition, r.offset))
    batches: list[list[Record]] = []
    i = 0
    while i < len(recs):
        n = rng.randint(50, 900)
        batches.append(recs[i : i + n])
        i += n
    return batches


def test_engine_state_equals_the_python_lane(corpus: list[tuple[str, bytes]]) -> None:
    rng = random.Random(23)
    products = [raw for t, raw in corpus if t == "shop.products"]
    demand = [(t, raw) for t, raw in corpus if t != "shop.products"]
    messages: list[tuple[str, bytes]] = []
    for topic, raw in demand:
        messages.append((topic, raw))
        r = rng.random()
        if r < 0.05:
            messages.extend((topic, m) for m in mutants(topic, raw, rng)[:2])
        elif r < 0.10:
            messages.append((topic, raw))  # a producer retry
    # out of order: some events pushed far back in their partition (late or corrected)
    for _ in range(300):
        i = rng.randrange(len(messages) // 2, len(messages))
        j = rng.randrange(0, len(messages) // 3)
        messages.insert(i, messages[j])
    ref = T0 + 2 * 3_600_000
    # future and stale times
    for ts in (ref + 3_600_000, 1000, ref - 400 * 86_400_000):
        messages.append(("shop.pageviews", orjson.dumps(_view(event_id=f"t{ts}", ts=ts))))
    results = _run_both(products, _records(messages, rng, ref), fail_every=4)
    assert results[0] == results[1]
    rejected = [r for batch in results[0][0::3] for r in batch[0]]
    reasons = {r[3] for r in rejected}
    assert {"future_ts", "stale_ts", "invalid_field"} <= reasons, reasons
    last = results[0][-1]
    ledger = last[("shop.pageviews", 0)]["ledger"]
    assert ledger.duplicates and ledger.corrected and balanced(ledger)


def test_late_events_and_a_short_horizon_equal_the_python_lane() -> None:
    """Events behind the watermark by more than the horizon become late events, also with
    a duplicate id among them; the compiled lane leaves those to Python."""
    ref = T0 + 30 * 86_400_000
    products = [orjson.dumps({
        "event_id": "p", "event_type": "product_upsert", "ts": 0, "shop_id": "s", "sku": "A",
        "factory_id": "F1", "category": "袜子", "color": "red", "size": "M",
        "list_price": 9.9, "lead_time_days": 7, "moq": 10})]
    views = []
    for i in range(600):
        ts = T0 + i * 60_000 if i % 50 else T0 - 3 * 86_400_000 + i  # every 50th: late
        views.append(orjson.dumps(_view(event_id=f"e{i % 580}", ts=ts, sku="AB"[i % 2],
                                        visitor_id=f"v{i % 13}")))
    batches = [[Record("shop.pageviews", 0, i, ref, None, raw) for i, raw in enumerate(views)]]
    batches = [batches[0][:250], batches[0][250:]]
    results = _run_both(products, batches)
    assert results[0] == results[1]
    assert results[0][0][1] or results[0][3][1]  # late events


def test_catalog_versions_inside_a_grain_equal_the_python_lane() -> None:
    t = T0 + 3_600_000

    def product(sku: str, ts: int, color: str, price: float) -> bytes:
        return orjson.dumps({
            "event_id": f"p-{sku}-{ts}", "event_type": "product_upsert", "ts": ts,
            "shop_id": "s", "sku": sku, "factory_id": "F1", "category": "袜子",
            "color": color, "size": "M", "list_price": price, "lead_time_days": 7, "moq": 10})

    products = [product("A", 0, "red", 15.0), product("A", t + 120_000, "blue", 55.0),
                product("B", 0, "green", 5.0)]
    views = [orjson.dumps(_view(event_id=f"v{i}", sku="ABC"[i % 3], ts=t + i * 7_000,
                                visitor_id=f"u{i % 7}", region="浙江" if i % 2 else "广东"))
             for i in range(300)]
    recs = [Record("shop.pageviews", 0, i, t + 10**7, None, raw) for i, raw in enumerate(views)]
    between = {1: [product("B", t + 800_000, "black", 250.0)]}
    results = _run_both(products, [recs[:100], recs[100:200], recs[200:]], between)
    assert results[0] == results[1]
    cells = results[0][-1][("shop.pageviews", 0)]["cells"]
    assert {"red", "blue", "green", "black", "unknown"} <= {k[3] for k in cells}
    assert results[0][-1][("shop.pageviews", 0)]["ledger"].unknown_sku_lines == 100


def test_the_engine_runs_the_compiled_lanes(monkeypatch: pytest.MonkeyPatch) -> None:
    """The default engine hands page views and logistics to the compiled lanes."""
    from streams.core import engine as engine_module

    calls: list[str] = []
    eng = DemandEngine()
    assert eng.config.native
    assert set(eng._lanes) == set(engine_module._LANE_NAMES)
    for topic, fn in list(eng._lanes.items()):
        def spy(*args: Any, _fn: Any = fn, _topic: str = topic) -> Any:
            calls.append(_topic)
            return _fn(*args)
        monkeypatch.setitem(eng._lanes, topic, spy)
    out = process(eng, [
        Record("shop.orders", 0, 0, T0, None, orjson.dumps(_order())),
        Record("shop.pageviews", 0, 0, T0, None, orjson.dumps(_view())),
        Record("shop.logistics", 0, 0, T0, None, orjson.dumps(_logistics())),
    ])
    assert not out.rejected
    assert sorted(calls) == ["shop.logistics", "shop.orders", "shop.pageviews"]
    for key in (("shop.orders", 0), ("shop.pageviews", 0), ("shop.logistics", 0)):
        assert eng.states[key].ledger.processed == 1


def test_orders_equal_the_python_lane() -> None:
    """Orders with repeated and unknown SKUs, cancellations, retries and a catalog change
    between batches: the compiled order lane leaves what the Python path leaves."""
    t = T0 + 3_600_000

    def product(sku: str, ts: int, color: str, price: float) -> bytes:
        return orjson.dumps({
            "event_id": f"p-{sku}-{ts}", "event_type": "product_upsert", "ts": ts,
            "shop_id": "s", "sku": sku, "factory_id": "F1", "category": "杯子",
            "color": color, "size": "L", "list_price": price, "lead_time_days": 7,
            "moq": 10})

    rng = random.Random(31)
    orders = []
    for i in range(400):
        lines = [{"sku": rng.choice("ABCD"), "qty": rng.randint(1, 9),
                  "unit_price": rng.choice([9.9, 18.9, 2.675, 0.00005, 120])}
                 for _ in range(rng.randint(1, 5))]
        kind = "order_cancelled" if i % 7 == 0 else "order_placed"
        orders.append(orjson.dumps(_order(
            *lines, event_id=f"o{i % 390}", event_type=kind, ts=t + i * 13_000,
            region="浙江" if i % 3 else "广东")))
    recs = [Record("shop.orders", 0, i, t + 10**7, None, raw) for i, raw in enumerate(orders)]
    products = [product("A", 0, "white", 15.0), product("B", 0, "black", 45.0),
                product("C", t + 600_000, "red", 8.0)]
    between = {1: [product("A", t + 2_000_000, "blue", 15.0)]}
    results = _run_both(products, [recs[:150], recs[150:300], recs[300:]], between)
    assert results[0] == results[1]
    st = results[0][-1][("shop.orders", 0)]
    assert st["ledger"].duplicates == 10 and st["ledger"].unknown_sku_lines > 0
    assert {"white", "blue", "black", "red", "unknown"} <= {k[3] for k in st["cells"]}


def test_state_built_by_the_lanes_is_not_walked_by_the_cyclic_gc() -> None:
    """Cell keys and cache entries made by the lanes hold only ints, strs and each other,
    so they are untracked (no cycle can pass through them; the counters themselves are
    C arrays of the store types); the young-generation collections then do not walk the
    live state again."""
    import gc

    eng = DemandEngine()
    process(eng, [Record("shop.pageviews", 0, i, T0, None,
                        orjson.dumps(_view(event_id=f"e{i}", ts=T0 - i * 400_000)))
                 for i in range(5)])
    st = eng.states[("shop.pageviews", 0)]
    assert len(st.cells) and st.visitors.pending and len(st.skus) and st.hot_pv
    assert st.shops.pending
    objects = [*st.cells.marked(),
               *st.hot_pv, *st.hot_pv.values(),
               *st.hot, *st.hot.values()]
    assert not any(gc.is_tracked(o) for o in objects)
    gc.collect()  # and nothing of it is collected: the engine goes on with the same state
    before = st.cells.snapshot()
    process(eng, [Record("shop.pageviews", 0, 10, T0, None, orjson.dumps(_view(event_id="x")))])
    after = st.cells.snapshot()
    assert sum(v[5] for v in after.values()) == sum(v[5] for v in before.values()) + 3


# ------------------------------------------------------------------ memory safety
def _lane_workload(corpus: list[tuple[str, bytes]]) -> None:
    """Everything the lanes do: the decoders, the parser and the hash on every message,
    then a fresh engine over the corpus (products first), its duplicates and a flush."""
    for topic, raw in corpus:
        {"shop.pageviews": lane.decode_pageview, "shop.logistics": lane.decode_logistics,
         "shop.orders": lane.decode_order}.get(topic, lane.id_hash)(raw)
        ts = orjson.loads(raw).get("ts")
        if isinstance(ts, str):
            assert lane.event_time(ts.encode()) is not None
        lane.id_hash(raw)
    eng = DemandEngine()
    offsets: dict[str, int] = {}
    records = []
    for topic, raw in corpus:
        offsets[topic] = offsets.get(topic, -1) + 1
        records.append(Record(topic, 0, offsets[topic], T0, None, raw))
    for r in records:
        if r.topic == "shop.products":
            eng.apply_product(r)
    demand = [r for r in records if r.topic != "shop.products"]
    process(eng, demand)
    process(eng, demand)  # every event again: the duplicate paths
    eng.flush_batch()
    # page views in a grain where a catalog version starts: the lane hands them back
    t = T0 + 3_600_000
    eng = DemandEngine()
    for product in [Record("shop.products", 0, i, None, None, orjson.dumps({
        "event_id": f"p{i}", "event_type": "product_upsert", "ts": ts, "shop_id": "s",
        "sku": "A", "factory_id": "F1", "category": "袜子", "color": color, "size": "M",
        "list_price": 15.0, "lead_time_days": 7, "moq": 10}))
        for i, (ts, color) in enumerate(((0, "red"), (t + 130_000, "blue")))]:
        eng.apply_product(product)
    process(eng, [Record("shop.pageviews", 0, i, t + 10**7, None, orjson.dumps(
        _view(event_id=f"v{i}", ts=t + 100_000 + i * 1_000, visitor_id=f"u{i % 7}")))
        for i in range(100)])


def test_the_lanes_leak_no_references(corpus: list[tuple[str, bytes]]) -> None:
    """A reference-leak check: the lanes' whole workload, run again and again on the same
    messages, leaves the number of live Python allocations where it was (a missing
    DECREF leaks one block per call: thousands per round) and takes no reference from
    its inputs."""
    import gc
    import sys

    sample = corpus[:3000]
    for _ in range(3):  # warm: caches, interned strings, type caches
        _lane_workload(sample)
    gc.collect()
    raws = [raw for _, raw in sample[:50]]
    refs = [sys.getrefcount(r) for r in raws]
    before = sys.getallocatedblocks()
    for _ in range(5):
        _lane_workload(sample)
    gc.collect()
    grown = sys.getallocatedblocks() - before
    assert [sys.getrefcount(r) for r in raws] == refs
    # a leak of one object per message would be 5 x 3,000 blocks and more
    assert grown < 500, f"{grown} blocks more after 5 rounds"


def test_the_sanitized_build_is_the_one_under_test() -> None:
    """Under .ci/sanitize (AddressSanitizer + UBSan): the module these tests drive is the
    instrumented build, not the project's own."""
    import os
    from pathlib import Path

    if not os.environ.get("C2M_EXPECT_SANITIZED_LANES"):
        pytest.skip("run by .ci/sanitize")
    maps = Path("/proc/self/maps").read_text()
    assert "libasan" in maps and "libubsan" in maps
    assert lane.__file__ is not None and lane.__file__ in maps
    # the scratch copy .ci/sanitize built, not the project's own module
    assert lane.__file__.startswith(os.environ["PYTHONPATH"])


# ------------------------------------------------------------------ typed interface
def test_lane_state_limits_and_core_are_typed_and_named() -> None:
    """The compiled core takes its settings, limits and a partition's state as named,
    type-checked objects: a missing or mistyped field is an error at construction, and the
    fields read back by name. The core's settings are fixed once it is made."""
    eng = DemandEngine()
    process(eng, [Record("shop.pageviews", 0, 0, T0, None, orjson.dumps(_view(event_id="a")))])
    st = eng.states[("shop.pageviews", 0)]
    state = eng._lane_state(st)
    assert state.cells is st.cells and state.shops is st.shops
    fields = {name: getattr(state, name) for name in (
        "dedup", "hot_pv", "hot", "cells", "visitors",
        "skus", "catalog", "generation", "shops")}
    assert isinstance(lane.LaneState(**fields), lane.LaneState)
    with pytest.raises(TypeError, match="missing shops"):
        lane.LaneState(**{k: v for k, v in fields.items() if k != "shops"})
    with pytest.raises(TypeError, match="must be dict, not list"):
        lane.LaneState(**{**fields, "hot": []})
    with pytest.raises(TypeError, match=r"must be streams\.core\._lanes\.Cells, not Cells"):
        lane.LaneState(**{**fields, "cells": Cells(end_of=lambda size, start: start + size)})
    with pytest.raises(TypeError, match="Cells: made without"):
        lane.LaneState(**{**fields, "cells": lane.Cells.__new__(lane.Cells)})
    with pytest.raises(TypeError, match=r"must be streams\.core\._lanes\.IdSet, not Deduplicator"):
        lane.LaneState(**{**fields, "dedup": Deduplicator(3_600_000)})
    with pytest.raises(TypeError, match="IdSet: made without"):
        lane.LaneState(**{**fields, "dedup": lane.IdSet.__new__(lane.IdSet)})
    with pytest.raises(TypeError, match="Versions: made without"):
        lane.LaneState(**{**fields, "catalog": lane.Versions.__new__(lane.Versions)})
    with pytest.raises(TypeError, match="CellHashes: made without"):
        lane.LaneState(**{**fields, "visitors": lane.CellHashes.__new__(lane.CellHashes)})
    with pytest.raises(TypeError, match="SkuHours: made without"):
        lane.LaneState(**{**fields, "skus": lane.SkuHours.__new__(lane.SkuHours)})
    with pytest.raises(TypeError, match=r"must be streams\.core\._lanes\.SkuHours, not SkuHours"):
        lane.LaneState(**{**fields, "skus": SkuHours()})
    with pytest.raises(TypeError, match="LaneState: made once"):
        state.__init__(**fields)  # type: ignore[misc]
    with pytest.raises(TypeError, match=r"must be streams\.core\._lanes\.Versions, not dict"):
        lane.LaneState(**{**fields, "catalog": {}})
    with pytest.raises(TypeError):
        lane.LaneState(*fields.values())  # keywords only
    with pytest.raises(AttributeError):
        state.cells = {}  # type: ignore[misc]
    core = eng._core
    assert core is not None
    assert core.sizes == tuple(eng.config.window_seconds)
    limits = core.limits
    assert limits.horizon_ms == eng.config.correction_horizon_ms
    assert limits.max_bytes == eng.config.max_message_bytes
    with pytest.raises(ValueError, match="divides an hour"):
        lane.Limits(grain_s=7, lateness_ms=0, horizon_ms=0, max_future_ms=0,
                    max_past_ms=0, max_bytes=1)
    with pytest.raises(ValueError, match="max_bytes missing"):
        lane.Limits(grain_s=60, lateness_ms=0, horizon_ms=0, max_future_ms=0,
                    max_past_ms=0)
    settings = {name: getattr(core, name) for name in (
        "sizes", "visitor_sizes", "grains", "grain_fn", "unknown", "limits")}
    assert isinstance(lane.Core(**settings), lane.Core)
    with pytest.raises(TypeError, match="required"):
        lane.Core(**{k: v for k, v in settings.items() if k != "limits"})
    with pytest.raises(ValueError, match="a visitor_sizes flag for each"):
        lane.Core(**{**settings, "visitor_sizes": ()})
    with pytest.raises(TypeError, match="grain_fn must be callable"):
        lane.Core(**{**settings, "grain_fn": 3})
    with pytest.raises(TypeError, match="limits made without their fields"):
        lane.Core(**{**settings, "limits": lane.Limits.__new__(lane.Limits)})
    with pytest.raises(TypeError, match="made once"):
        core.__init__(**settings)  # type: ignore[misc]
    with pytest.raises(AttributeError):
        core.sizes = (60,)  # type: ignore[misc]
    with pytest.raises(TypeError, match="LaneState"):
        core.pageview_run(tuple(fields.values()), [], 0, None)  # type: ignore[arg-type]
    # made without their fields (__new__ alone): refused, not read
    with pytest.raises(TypeError, match="LaneState"):
        core.pageview_run(lane.LaneState.__new__(lane.LaneState), [], 0, None)
    with pytest.raises(TypeError, match="the Core was not made with its settings"):
        lane.Core.__new__(lane.Core).order_run(state, [], 0, None)
    with pytest.raises(TypeError, match="hot_entry"):
        core.hot_entry(lane.LaneState.__new__(lane.LaneState), ("a", "b", "c", "d", "e", 1))


def test_the_core_keeps_no_state_at_module_level() -> None:
    """The caches belong to each Core, none to the module: the only file-scope data of
    _lanes.c (read mechanically from its source) are the types, their tables and the
    interned names, all immutable once made; and two engines reading the same events in
    turns, each core with its own caches, leave what one engine alone leaves."""
    source = (Path(__file__).resolve().parents[2] / "streams/core/_lanes.c").read_text()
    declared = set()
    for m in re.finditer(r"^static (?!const |inline )([^(=;{]*?)(?:\[\])?\s*(?:=|;)", source,
                         re.MULTILINE):
        for name in m.group(1).split(","):
            declared.add(name.strip().split()[-1].lstrip("*"))
    # the store types' tables, declared by macros (STORE_TYPE's use LANES_STORE_TYPE's):
    # read them too
    made: dict[str, list[str]] = {}
    for macro in ("LANES_STORE_TYPE", "STORE_TYPE"):
        m = re.search(rf"^#define {macro}\(.*?\n(?:.*\\\n)*.*\n", source, re.MULTILINE)
        assert m is not None
        made[macro] = re.findall(r"static [^=(]*?(Name##\w+)(?:\[\])? =", m.group(0))
    assert made == {"LANES_STORE_TYPE": ["Name##_getset", "Name##_as_sequence", "Name##Type"],
                    "STORE_TYPE": ["Name##_methods"]}
    for macro, tables in (("LANES_STORE_TYPE", made["LANES_STORE_TYPE"]),
                          ("STORE_TYPE", made["STORE_TYPE"] + made["LANES_STORE_TYPE"])):
        for name in re.findall(rf"^{macro}\((\w+),", source, re.MULTILINE):
            declared |= {t.replace("Name##", name) for t in tables}
    assert declared == {
        "S_value", "S_timestamp", "S_category", "S_color", "S_size", "S_price_band",
        "IdSet_methods", "IdSet_members", "IdSet_getset", "IdSet_as_sequence", "IdSetType",
        "Versions_methods", "Versions_getset", "Versions_members", "Versions_as_sequence",
        "VersionsType",
        "SkuHours_methods", "SkuHours_getset", "SkuHours_as_sequence", "SkuHoursType",
        "CellHashes_methods", "CellHashes_getset", "CellHashes_as_sequence", "CellHashesType",
        "Cells_methods", "Cells_getset", "Cells_as_sequence", "CellsType",
        "LaneState_members", "LaneStateType", "Limits_members", "LimitsType", "Core_members",
        "Core_methods", "CoreType", "methods", "slots", "module", "RunResult_fields",
        "RunResult_desc", "RunResultType", "HotEntry_fields", "HotEntry_desc", "HotEntryType",
        "PageViewEntry_fields", "PageViewEntry_desc", "PageViewEntryType",
    }
    assert "PyModuleDef_Init(&module)" in source and "PyModule_Create" not in source
    events = [Record("shop.pageviews", 0, i, T0 + i, None, orjson.dumps(
        _view(event_id=f"v{i}", visitor_id=f"u{i % 7}", sku=f"SKU-{i % 3}")))
        for i in range(60)]
    alone = DemandEngine()
    process(alone, events)
    a, b = DemandEngine(), DemandEngine()
    for i in range(0, 60, 10):  # interleaved: each core's caches see every other call
        process(a, events[i : i + 10])
        process(b, events[i : i + 10])
    for eng in (a, b):
        st = eng.states[("shop.pageviews", 0)]
        ref = alone.states[("shop.pageviews", 0)]
        assert st.cells.snapshot() == ref.cells.snapshot()
        assert st.visitors.snapshot() == ref.visitors.snapshot()
        assert st.shops.snapshot() == ref.shops.snapshot()
        assert st.skus.snapshot() == ref.skus.snapshot()


def test_the_cache_entries_are_records_read_by_name() -> None:
    """The hot-path cache entries are one named record type each (the compiled core's struct
    sequences, made by the Python paths too), not tuples both sides read by position: the
    Python and the native engines hold the same types, with the same fields; the lanes
    refuse an entry of another type (a plain tuple of the same length) with a TypeError."""
    from streams.core import demand

    assert demand.HotEntry is lane.HotEntry and demand.PageViewEntry is lane.PageViewEntry
    assert lane.HotEntry.n_fields == 3 and lane.PageViewEntry.n_fields == 6
    assert lane.PageViewEntry((1, False, 2, "v", "s", "t"))[3:] == ("v", "s", "t")
    views = [Record("shop.pageviews", 0, i, T0, None, orjson.dumps(_view(event_id=f"v{i}")))
             for i in range(3)]
    for native in (False, True):
        eng = DemandEngine(EngineConfig(native=native))
        process(eng, views)
        st = eng.states[("shop.pageviews", 0)]
        (e,) = st.hot_pv.values()
        (h,) = st.hot.values()
        assert type(e) is lane.PageViewEntry and type(h) is lane.HotEntry
        assert e.generation == eng.catalog.generation and e.unknown_sku is True
        assert e.cells == h.cells and len(h.cells) == len(eng.config.window_seconds)
        assert [st.cells.get(st.cells.key_of(c))[demand.PAGEVIEWS] for c in h.cells] == [
            3] * len(h.cells)
        assert st.skus.key_of(e.sku_hour)[0] == "A"
    # the native engine's lanes read entries by type: a tuple planted in their place is
    # refused, whichever lane finds it
    (key,) = st.hot_pv
    st.hot_pv[key] = tuple(e)
    more = [Record("shop.pageviews", 0, 3, T0, None, orjson.dumps(_view(event_id="v3")))]
    with pytest.raises(TypeError, match="not a PageViewEntry"):
        process(eng, more)
    st.hot_pv.clear()
    (hk,) = st.hot
    st.hot[hk] = tuple(h)
    more = [Record("shop.pageviews", 0, 4, T0, None, orjson.dumps(_view(event_id="v4")))]
    with pytest.raises(TypeError, match="not a HotEntry"):  # (v3 was admitted: a new id)
        process(eng, more)


def test_the_core_names_the_python_constants_it_uses() -> None:
    """The vector slots the C code writes are the Python constants by name (exported by
    the module, equal here), not numbers mirrored by a comment; a lane's result is read
    by name."""
    from streams.core import demand, inventory

    cell = ("ORDERS", "UNITS", "GMV_E4", "CANCELLED_UNITS", "RETURNED_UNITS", "PAGEVIEWS")
    sku = ("SKU_ORDERS", "SKU_UNITS", "SKU_CANCELLED", "SKU_RETURNED", "SKU_PAGEVIEWS",
           "SKU_SHIPPED", "SKU_RECEIVED", "SKU_COUNT_TS", "SKU_COUNT_ON_HAND")
    assert [getattr(lane, n) for n in cell] == [getattr(demand, n) for n in cell]
    assert [getattr(lane, n) for n in sku] == [getattr(inventory, n) for n in sku]
    assert len(cell) == len(demand.MEASURES) and len(sku) == len(inventory.SKU_MEASURES)
    source = (Path(__file__).resolve().parents[2] / "streams/core/_lanes.c").read_text()
    assert not re.findall(r"\b\d+ /\* [A-Z][A-Z_]+ \*/", source)  # no number named by a comment
    eng = DemandEngine()
    st = eng.state("shop.pageviews", 0)
    assert eng._core is not None
    got = eng._core.pageview_run(eng._lane_state(st), [
        Record("shop.pageviews", 0, 0, T0, None, orjson.dumps(_view(event_id="a"))),
        Record("shop.pageviews", 0, 1, T0, None, orjson.dumps(_view(event_id="a")))], 0, None)
    assert isinstance(got, lane.RunResult)
    assert (got.stop, got.status, got.max_ts, got.consumed, got.processed, got.duplicates,
            got.corrected, got.unknown_sku) == (2, lane.DONE, T0, 2, 1, 1, 0, 1)
    assert len(st.cells) == len(eng.config.window_seconds)


# ------------------------------------------------------------------ the dedup state
def _idset(horizon_ms: int) -> lane.IdSet:
    return lane.IdSet(horizon_ms=horizon_ms, bucket_ms=BUCKET_MS)


@pytest.mark.parametrize("seed", range(6))
def test_the_compiled_dedup_state_does_what_the_reference_does(seed: int) -> None:
    """IdSet against Deduplicator, operation by operation, on the same random sequence:
    ids offered again (duplicates), ids persisted and loaded (from a small pool of raw
    hashes with the hash 0 and neighbours in the table, so that probing chains and their
    deletion by backward shift are exercised), cuts that fail and are given back, and
    expiry at moving watermarks (whole buckets leave the table; a table left nearly empty
    shrinks). Every answer, the length, the pending count and the whole state (buckets,
    their ids in order, their cut marks) must be equal after every step."""
    rnd = random.Random(seed)
    horizon = rnd.choice([0, 3_600_000, 5 * 3_600_000])
    ref, got = Deduplicator(horizon), _idset(horizon)
    names = [f"ev-{i}-{'雾' * (i % 3)}" for i in range(3000)]
    raw = [0, 1, 2, 2**63, 2**64 - 1] + [rnd.getrandbits(64) for _ in range(500)] + [
        id_hash(n) for n in names[:300]] + list(range(3, 400))
    hour = 10
    cuts: list[Any] = []
    for step in range(4000):
        op = rnd.random()
        if op < 0.6:
            name = rnd.choice(names)
            ts = (hour + rnd.randint(-3, 1)) * BUCKET_MS + rnd.randint(0, BUCKET_MS - 1)
            assert got.first_time(name, ts) == ref.first_time(name, ts), step
        elif op < 0.7:
            pairs = [(hour + rnd.randint(-4, 0), rnd.choice(raw))
                     for _ in range(rnd.randint(0, 40))]
            got.load(pairs if rnd.random() < 0.5 else iter(pairs))
            ref.load(pairs)
        elif op < 0.8:
            a, b = got.cut(), ref.cut()
            assert a == b, step
            cuts.append(a)
        elif op < 0.85 and cuts:
            taken = cuts.pop(rnd.randrange(len(cuts)))
            got.uncut(taken)
            ref.uncut(taken)
        elif op < 0.95:
            wm = (hour + rnd.randint(-2, 1)) * BUCKET_MS + rnd.randint(-5, 5)
            assert got.expire(wm) == ref.expire(wm), step
        else:
            hour += rnd.randint(0, 3)
        assert len(got) == len(ref) and got.pending == ref.pending, step
        assert list(got.snapshot().items()) == list(ref.snapshot().items()), step
    # and everything still held is found: offering each name again answers the same
    for name in names:
        assert got.first_time(name, hour * BUCKET_MS) == ref.first_time(name, hour * BUCKET_MS)


def test_the_compiled_dedup_state_frees_what_it_forgets() -> None:
    """Its memory is PyMem (traced): a million ids take about a third of the reference's
    bytes, forgetting them gives the table and the buckets back, and so does the object."""
    import tracemalloc

    names = [f"shop-7-{i:012d}" for i in range(200_000)]
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        d = _idset(3_600_000)
        for i, name in enumerate(names):
            d.first_time(name, (i // 20_000) * BUCKET_MS)
        d.cut()
        held = tracemalloc.get_traced_memory()[0] - base
        assert held / len(names) < 40, held / len(names)
        assert d.__sizeof__() >= held * 0.9
        assert d.expire(20 * BUCKET_MS) == len(names) and len(d) == 0
        assert tracemalloc.get_traced_memory()[0] - base < 4_096
        for name in names[:50_000]:
            d.first_time(name, 30 * BUCKET_MS)
        del d
        assert tracemalloc.get_traced_memory()[0] - base < 1_024
    finally:
        tracemalloc.stop()


def test_the_compiled_dedup_state_refuses_what_it_cannot_hold() -> None:
    with pytest.raises(TypeError, match="IdSet: made without"):
        lane.IdSet.__new__(lane.IdSet).first_time("a", 0)
    with pytest.raises(ValueError, match="by keyword"):
        lane.IdSet(horizon_ms=1)
    with pytest.raises(TypeError):
        lane.IdSet(1, 2)  # type: ignore[misc]
    d = _idset(0)
    with pytest.raises(TypeError, match="made once"):
        d.__init__(horizon_ms=1, bucket_ms=1)  # type: ignore[misc]
    with pytest.raises(TypeError, match="event_id: str"):
        d.first_time(b"a", 0)  # type: ignore[arg-type]
    with pytest.raises(OverflowError):
        d.load([(0, -1)])
    with pytest.raises(ValueError, match="pairs"):
        d.load([(0, 1, 2)])
    with pytest.raises(TypeError, match="what cut\\(\\) returned"):
        d.uncut(([], []))  # type: ignore[arg-type]
    with pytest.raises(UnicodeEncodeError):
        d.first_time("\ud800", 0)
    assert len(d) == 0 and d.snapshot() == {}


def test_a_load_that_fails_changes_nothing() -> None:
    """All or nothing: a malformed pair after good ones leaves the state as it was."""
    d = _idset(3_600_000)
    d.first_time("a", 0)
    before = (len(d), d.pending, d.snapshot())
    with pytest.raises(ValueError, match="pairs"):
        d.load([(0, 11), (1, 12), (2, 13, 0)])
    with pytest.raises(OverflowError):
        d.load([(0, 11), (5, 2**64)])
    assert (len(d), d.pending, d.snapshot()) == before
    d.load([(0, 11), (1, 12)])  # and the same ids load afterwards
    assert d.snapshot() == {0: ([11, id_hash("a")], 1), 1: ([12], 1)}


# ------------------------------------------------------------------ the SKU hours
def _half_hours(ts_s: int) -> int:
    """An hour_of whose hours are not UTC hours (a zone 30 minutes off UTC)."""
    return ts_s - (ts_s - 1800) % 3600


@pytest.mark.parametrize("seed", range(4))
def test_the_compiled_sku_hours_do_what_the_reference_does(seed: int) -> None:
    """lane.SkuHours against inventory.SkuHours on the same random handles and adds,
    stock counts (ties, older counts, negative times), cuts (some given back as after a
    failed write, with newer marks between), loads of persisted hours, evictions (marked
    hours kept) and hours made again after an eviction (a reused entry): every answer,
    the marks in order, the flush rows and the whole state equal after every step."""
    rnd = random.Random(seed)
    hour_of = rnd.choice([utc_hour, _half_hours])
    got, ref = lane.SkuHours(hour_of=hour_of), SkuHours(hour_of=hour_of)
    skus = [f"SKU-{i}" for i in range(12)] + ["雾-1", ""]
    handles: list[tuple[Any, Any]] = []
    cuts: list[tuple[list[Any], list[Any]]] = []
    for step in range(3000):
        op = rnd.random()
        sku = rnd.choice(skus)
        ts = rnd.randint(-3, 30) * 1_800_000 + rnd.choice([0, 1, 999, 1000, -1])
        if op < 0.3:
            handles.append((got.handle(sku, ts), ref.handle(sku, ts)))
            slot = rnd.randrange(SKU_COUNT_TS)
            n = rnd.randint(-3, 50)
            got.add(handles[-1][0], slot, n)
            ref.add(handles[-1][1], slot, n)
            assert got.key_of(handles[-1][0]) == ref.key_of(handles[-1][1]), step
        elif op < 0.45 and handles:  # an older handle, while its hour is marked
            hg, hr = rnd.choice(handles)
            got.add(hg, SKU_PAGEVIEWS, 1)
            ref.add(hr, SKU_PAGEVIEWS, 1)
        elif op < 0.6:
            on_hand = rnd.choice([0, 5, 7, rnd.randint(-2, 100)])
            got.stock_count(sku, ts, on_hand)
            ref.stock_count(sku, ts, on_hand)
        elif op < 0.7:
            a, b = got.cut(), ref.cut()
            assert a == b, step
            assert got.rows("t", 3, a, step) == ref.rows("t", 3, b, step), step
            cuts.append((a, b))
            handles.clear()  # (a cut ends the handles' life: the lane entries go with it)
        elif op < 0.75 and cuts:  # the write of the last cut failed
            a, b = cuts.pop()
            got.uncut(a)
            ref.uncut(b)
        elif op < 0.85:
            keep = rnd.randint(-3, 32) * 1800
            assert got.evict(keep) == ref.evict(keep), step
            cuts.clear()  # (only a cut that was written is evicted)
        elif op < 0.9:
            hour = hour_of(ts // 1000)
            vec = [rnd.randint(-1, 9) for _ in range(9)]
            got.load([((sku, hour), vec)])
            ref.load([((sku, hour), tuple(vec))])
        else:
            hour = hour_of(ts // 1000)
            assert got.get(sku, hour) == ref.get(sku, hour), step
        assert got.snapshot() == ref.snapshot(), step
        assert got.marked() == ref.marked() and got.pending == ref.pending, step
        assert len(got) == len(ref), step


def test_the_compiled_sku_hours_refuse_misuse() -> None:
    """A handle of an evicted hour (its entry not yet reused), a slot that is not a
    counter, a counter beyond 64 bits, a malformed persisted row and keys no longer held
    are one clear error each, in both; the compiled one takes numbers only from ints, so
    no Python code (an ``__index__``) runs while it holds an entry."""
    for impl in (lane.SkuHours, SkuHours):
        s = impl(hour_of=utc_hour)
        h = s.handle("A", 5_000)
        s.add(h, SKU_PAGEVIEWS, 2)
        with pytest.raises(ValueError, match="not a counter"):
            s.add(h, SKU_COUNT_TS, 1)
        s.add(h, 0, (1 << 63) - 1)
        with pytest.raises(OverflowError, match="64 bits"):
            s.add(h, 0, 1)
        assert s.rows("t", 0, s.cut(), 9) == [
            ("t", 0, "A", 0, (1 << 63) - 1, 0, 0, 0, 2, 0, 0, -1, 0, 9)]
        assert s.evict(3600) == 1 and len(s) == 0 and s.pending == 0
        with pytest.raises(KeyError):
            s.add(h, 0, 1)
        with pytest.raises(KeyError):
            s.uncut([("A", 0)])
        with pytest.raises(KeyError):
            s.rows("t", 0, [("A", 0)], 1)
        with pytest.raises(ValueError, match="nine counters"):
            s.load([(("A", 0), [1, 2])])
        with pytest.raises(TypeError):
            s.load([((1, 0), [0] * 9)])
        with pytest.raises(TypeError):
            impl(hour_of=utc_hour).handle(1, 0)  # type: ignore[arg-type]
        last = (1 << 63) - 1  # an hour that ends after the largest bound: never evicted
        s.load([(("B", last), [0] * 9), (("B", last - 3600), [0] * 9)])
        assert s.evict(last) == 1 and s.get("B", last) == [0] * 9 and len(s) == 1
    class Evicts:  # an "int" whose __index__ would evict the hour a call holds
        def __init__(self, s: Any) -> None:
            self.s = s

        def __index__(self) -> int:
            self.s.cut()
            self.s.evict(1 << 40)
            return 0

    s = lane.SkuHours(hour_of=utc_hour)
    h = s.handle("A", 0)
    s.cut()  # a handle ends with the cut, even while its hour is held
    with pytest.raises(KeyError, match="cut since"):
        s.add(h, 0, 1)
    h = s.handle("A", 0)
    for call in (lambda: s.add(h, 0, Evicts(s)), lambda: s.uncut([("A", Evicts(s))]),
                 lambda: s.rows("t", 0, [("A", Evicts(s))], 1),
                 lambda: s.load([(("A", 0), [Evicts(s)] * 9)])):
        with pytest.raises(TypeError, match="an int expected"):  # no Python code runs
            call()
    assert s.marked() == [("A", 0)] and s.get("A", 0) == [0] * 7 + [-1, 0]
    with pytest.raises(TypeError, match="hour_of"):
        lane.SkuHours()  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="made without"):
        lane.SkuHours.__new__(lane.SkuHours).handle("A", 0)


@pytest.mark.parametrize("seed", range(4))
def test_the_compiled_cell_hashes_do_what_the_reference_does(seed: int) -> None:
    """lane.CellHashes against demand.CellHashes on the same random handles, adds (the
    same hash again, 0 and 2**64 - 1, enough to grow the table), cuts and cuts given
    back (merged into cells made since): every cut, the whole state and the pending
    count equal after every step, and a handle of a cell named by the key it names."""
    rnd = random.Random(seed)
    got, ref = lane.CellHashes(), CellHashes()
    keys = [(300, i, "c", "red", "M", "10-20", "华东") for i in range(40)]
    keys.append((3600, 0, "", "", "", "", ""))
    hashes = [0, 1, (1 << 64) - 1, 1 << 63] + [rnd.getrandbits(64) for _ in range(3000)]
    handles: list[tuple[Any, Any]] = []
    taken: list[tuple[Any, Any]] = []
    for step in range(4000):
        op = rnd.random()
        if op < 0.2 or not handles:
            key = rnd.choice(keys)
            handles.append((got.handle(key), ref.handle(key)))
            assert got.key_of(handles[-1][0]) == key == ref.key_of(handles[-1][1]), step
        elif op < 0.9:
            hg, hr = rnd.choice(handles)
            h = rnd.choice(hashes[: rnd.choice([4, 50, len(hashes)])])
            got.add(hg, h)
            ref.add(hr, h)
        elif op < 0.96:
            a, b = got.cut(), ref.cut()
            assert a == b, step
            taken.append((a, b))
            handles.clear()
        elif taken:
            a, b = taken.pop()
            got.uncut(a)
            ref.uncut(b)
            handles.clear()  # (only to keep to live handles: uncut leaves them good)
        assert got.snapshot() == ref.snapshot() and got.pending == ref.pending, step
        assert len(got) == len(ref), step
    assert got.cut() == ref.cut()


def test_the_compiled_cell_hashes_refuse_misuse() -> None:
    """A handle kept past a cut, a hash out of range or not an int, and a malformed
    uncut are one clear error each, in both."""
    for impl in (lane.CellHashes, CellHashes):
        s = impl()
        h = s.handle((300, 0, "a"))
        s.add(h, 5)
        with pytest.raises(OverflowError):
            s.add(h, 1 << 64)
        with pytest.raises(OverflowError):
            s.add(h, -1)
        with pytest.raises(TypeError):
            s.add(h, 1.0)  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            s.handle("not a tuple")  # type: ignore[arg-type]
        assert s.cut() == [((300, 0, "a"), [5])] and s.pending == 0 and len(s) == 0
        with pytest.raises(KeyError):
            s.add(h, 6)
        s.handle((300, 1, "b"))  # a new cell (in the compiled one, at the old index)
        with pytest.raises(KeyError):
            s.add(h, 6)  # the handle is still refused
        with pytest.raises(TypeError):
            s.uncut([((300, 0, "a"), [1.5])])
        assert s.snapshot() == {(300, 1, "b"): set()}  # (nothing merged)


# ------------------------------------------------------------------ the cells
def _window_end(size: int, start: int) -> int:
    """An end_of whose daily windows are not UTC days (a zone 30 minutes off UTC)."""
    return start + size + (1800 if size >= 86_400 else 0)


@pytest.mark.parametrize("seed", range(4))
def test_the_compiled_cells_do_what_the_reference_does(seed: int) -> None:
    """lane.Cells against demand.Cells on the same random handles and adds (negative,
    large), cuts (some given back as after a failed write, with newer marks between),
    loads of persisted cells (new ones and over held ones), evictions with two bounds
    (marked cells kept, tried again later) and cells made again after an eviction (a
    reused entry): every answer, the marks in order, the flush rows and the whole state
    equal after every step."""
    rnd = random.Random(seed)
    got, ref = lane.Cells(end_of=_window_end), Cells(end_of=_window_end)
    sizes = [300, 3600, 86_400]
    keys = [(size, start, cat, "红", "M", "10-20", region)
            for size in sizes for start in range(0, 40 * 300, size)
            for cat in ("袜子", "") for region in ("华东", "")]
    handles: list[tuple[Any, Any]] = []
    cuts: list[tuple[list[Any], list[Any]]] = []
    for step in range(3000):
        op = rnd.random()
        key = rnd.choice(keys)
        if op < 0.35:
            end = _window_end(key[0], key[1])
            handles.append((got.handle(key, end), ref.handle(key, end)))
            assert got.key_of(handles[-1][0]) == key == ref.key_of(handles[-1][1]), step
            slot, n = rnd.randrange(6), rnd.choice([1, -2, 7, 1 << 40])
            got.add(handles[-1][0], slot, n)
            ref.add(handles[-1][1], slot, n)
        elif op < 0.55 and handles:  # an older handle of this cut
            hg, hr = rnd.choice(handles)
            got.add(hg, PAGEVIEWS, 1)
            ref.add(hr, PAGEVIEWS, 1)
        elif op < 0.65:
            a, b = got.cut(), ref.cut()
            assert a == b, step
            assert got.rows("t", 3, a, step) == ref.rows("t", 3, b, step), step
            cuts.append((a, b))
            handles.clear()  # (a cut ends the handles: the hot entries go with it)
        elif op < 0.7 and cuts:  # the write of the last cut failed
            a, b = cuts.pop()
            got.uncut(a)
            ref.uncut(b)
        elif op < 0.82:
            short, long = rnd.randint(-2, 45) * 300, rnd.randint(-30, 45) * 300
            assert got.evict(short, long) == ref.evict(short, long), step
            cuts.clear()  # (only a cut that was written is evicted)
            handles.clear()
        elif op < 0.9:
            vec = [rnd.randint(-1, 9) for _ in range(6)]
            got.load([(key, vec)])
            ref.load([(key, tuple(vec))])
        else:
            assert got.get(key) == ref.get(key), step
        assert got.snapshot() == ref.snapshot(), step
        assert got.marked() == ref.marked() and got.pending == ref.pending, step
        assert len(got) == len(ref), step


def test_the_compiled_cells_refuse_misuse() -> None:
    """A handle kept past a cut, a slot that is not a measure, a counter beyond 64 bits,
    a key of the wrong shape, a malformed persisted row and keys no longer held are one
    clear error each, in both; the compiled one takes numbers only from ints, and its
    keys only of ints and strs, so no Python code runs while it holds an entry."""
    key = (300, 0, "袜子", "红", "M", "10-20", "华东")
    for impl in (lane.Cells, Cells):
        s = impl(end_of=_window_end)
        h = s.handle(key, 300)
        s.add(h, PAGEVIEWS, 2)
        with pytest.raises(ValueError, match="not a measure"):
            s.add(h, 6, 1)
        s.add(h, 0, (1 << 63) - 1)
        with pytest.raises(OverflowError, match="64 bits"):
            s.add(h, 0, 1)
        assert s.rows("t", 0, s.cut(), 9) == [("t", 0, *key, (1 << 63) - 1, 0, 0, 0, 0, 2, 9)]
        if impl is lane.Cells:
            with pytest.raises(KeyError, match="cut since"):  # (the reference's is the key)
                s.add(h, 0, 1)
        assert s.evict(300, 0) == 1 and len(s) == 0 and s.pending == 0
        with pytest.raises(KeyError):
            s.add(h, 0, 1)
        with pytest.raises(KeyError):
            s.uncut([key])
        with pytest.raises(KeyError):
            s.rows("t", 0, [key], 1)
        with pytest.raises(ValueError, match="six counters"):
            s.load([(key, [1, 2])])
        for bad in ((300, 0, "a"), [300, 0, "a", "b", "c", "d", "e"],
                    (300, 0, "a", "b", "c", "d", 5), (300.0, 0, "a", "b", "c", "d", "e")):
            with pytest.raises(TypeError, match="a key is"):
                s.handle(bad, 300)  # type: ignore[arg-type]
            with pytest.raises(TypeError, match="a key is"):
                s.load([(bad, [0] * 6)])  # type: ignore[list-item]
        s.load([(key, [1, 2, 3, 4, 5, 6])])
        assert s.get(key) == [1, 2, 3, 4, 5, 6] and s.pending == 0
        assert s.evict(_window_end(300, 0) - 1, 0) == 0 and s.evict(300, 0) == 1
    class Evicts:  # an "int" whose __index__ would evict the cell a call holds
        def __init__(self, s: Any) -> None:
            self.s = s

        def __index__(self) -> int:
            self.s.cut()
            self.s.evict(1 << 40, 1 << 40)
            return 0

    s = lane.Cells(end_of=_window_end)
    h = s.handle(key, 300)
    for call in (lambda: s.add(h, 0, Evicts(s)), lambda: s.handle(key, Evicts(s)),
                 lambda: s.load([(key, [Evicts(s)] * 6)]),
                 lambda: s.evict(Evicts(s), 0)):
        with pytest.raises(TypeError, match="an int expected"):  # no Python code runs
            call()
    assert s.marked() == [key] and s.get(key) == [0] * 6
    with pytest.raises(TypeError, match="end_of"):
        lane.Cells()  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="made without"):
        lane.Cells.__new__(lane.Cells).handle(key, 0)


def test_the_compiled_cells_release_their_keys() -> None:
    """Each cell held holds its key once; evicting it or dropping the store releases it
    (reference counts back where they were), an evicted entry is used again, and a table
    emptied by an eviction shrinks."""
    import sys

    keys = [(3600, h * 3600, "".join(["c", str(h)]), "", "", "", "") for h in range(2000)]
    refs = [sys.getrefcount(k) for k in keys]
    s = lane.Cells(end_of=_window_end)
    for k in keys:
        s.add(s.handle(k, k[1] + 3600), 1, 1)
    del k
    assert [sys.getrefcount(k) for k in keys] == [r + 1 for r in refs]
    big = s.__sizeof__()
    s.cut()
    assert s.evict(0, 1990 * 3600) == 1990 and len(s) == 10
    assert [sys.getrefcount(k) for k in keys] == [r + (i >= 1990) for i, r in enumerate(refs)]
    small = s.__sizeof__()
    assert small < big - 8 * 1024  # the table shrank (entries keep their room)
    assert s.snapshot() == {k: [0, 1, 0, 0, 0, 0] for k in keys[1990:]}
    for k in keys[:1990]:
        s.handle(k, k[1] + 3600)
    assert len(s) == 2000 and s.__sizeof__() <= big  # (the evicted entries used again)
    assert all(s.get(k) == [0] * 6 for k in keys[:1990])
    del s, k
    assert [sys.getrefcount(k) for k in keys] == refs


@pytest.mark.parametrize("native", [False, True])
def test_a_give_back_that_fails_on_one_store_still_gives_back_the_others(native: bool) -> None:
    """PartitionState.reattach gives each store its marks back on its own: when the cells
    refuse theirs (evicted meanwhile), the visitor hashes, shop tags, SKU hours and dedup
    ids are pending again all the same, and the cells' error is raised."""
    eng = DemandEngine(EngineConfig(native=native))
    process(eng, [Record("shop.pageviews", 0, i, T0, None,
                         orjson.dumps(_view(event_id=f"v{i}", visitor_id=f"u{i}")))
                  for i in range(3)])
    st = eng.states[("shop.pageviews", 0)]
    cut = st.detach()
    assert cut.dirty and cut.visitors and cut.sku_dirty and st.visitors.pending == 0
    assert st.cells.evict(1 << 40, 1 << 40) == len(cut.dirty)  # (clean after the cut)
    with pytest.raises(KeyError):
        st.reattach(cut)
    assert st.visitors.pending == 3 and st.shops.pending and st.skus.pending == 1
    assert st.dedup.pending == 3


def test_a_cut_that_fails_on_the_sku_hours_takes_no_dedup_ids_either() -> None:
    """PartitionState.detach takes the dedup ids and the SKU hours' marks together: when
    the second fails, the first are given back, so nothing pending is lost."""
    from streams.core.demand import PartitionState
    from streams.core.windows import Watermark

    class Failing(SkuHours):
        def cut(self) -> list[tuple[str, int]]:
            raise MemoryError

    st = PartitionState("t", 0, Watermark(0), Deduplicator(3_600_000), position=5,
                        skus=Failing())
    assert st.dedup.first_time("e1", 1_000)
    st.skus.handle("A", 1_000)
    with pytest.raises(MemoryError):
        st.detach()
    assert st.dedup.pending == 1 and st.skus.pending == 1


@pytest.mark.parametrize("native", [True, False])
def test_a_flush_cut_that_fails_gives_back_what_it_took(native: bool) -> None:
    """When one partition's cut fails, flush_batch gives back the cuts it already took
    from the others: the next cut writes the same rows as a cut that never failed."""
    def engine() -> DemandEngine:
        eng = DemandEngine(EngineConfig(native=native))
        process(eng, [Record("shop.pageviews", p, i, T0, None, orjson.dumps(
            _view(event_id=f"e{p}-{i}", visitor_id=f"u{i}", ts=T0 - i * 60_000)))
            for p in (0, 1) for i in range(20)])
        return eng

    ok, failing = engine(), engine()

    class Failing:  # the second partition's SKU hours fail to cut, once
        def __init__(self, real: Any) -> None:
            self.real = real

        def cut(self) -> Any:
            failing.states[("shop.pageviews", 1)].skus = self.real
            raise MemoryError

        def __getattr__(self, name: str) -> Any:
            return getattr(self.real, name)

    st1 = failing.states[("shop.pageviews", 1)]
    st1.skus = Failing(st1.skus)  # type: ignore[assignment]
    with pytest.raises(MemoryError):
        failing.flush_batch()
    assert _batch(failing.flush_batch()) == _batch(ok.flush_batch())


def test_the_compiled_sku_hours_release_their_skus() -> None:
    """Each hour held holds its SKU once; evicting it or dropping the store releases it
    (reference counts back where they were), and a table emptied by an eviction shrinks."""
    import sys

    skus = ["".join(["SKU-", str(i)]) for i in range(50)]  # (strs made at run time)
    refs = [sys.getrefcount(x) for x in skus]
    s = lane.SkuHours(hour_of=utc_hour)
    for hour in range(40):
        for sku in skus:
            s.add(s.handle(sku, hour * 3_600_000), 0, 1)
    del sku
    big = s.__sizeof__()
    s.cut()
    assert s.evict(39 * 3600) == 39 * 50 and len(s) == 50
    assert s.__sizeof__() < big - 8 * 1024  # the table shrank (entries keep their room)
    assert [sys.getrefcount(x) for x in skus] == [r + 1 for r in refs]
    del s
    assert [sys.getrefcount(x) for x in skus] == refs


# ------------------------------------------------------------------ the catalog's versions
@pytest.mark.parametrize("seed", range(4))
def test_the_compiled_catalog_versions_do_what_the_reference_does(seed: int) -> None:
    """Versions against CatalogVersions on the same random puts (in and out of order, the
    same ts again, beyond max_versions, older than every version held), deletes and SKUs
    put again after a delete (a reused entry), lookups at, between and around the version
    times, and spans across them: every answer, the generation, the length, the SKUs in
    order and every SKU's versions equal after every step."""
    from streams.core.catalog import CatalogVersions

    rnd = random.Random(seed)
    cap = rnd.choice([1, 2, 3, 8])
    got, ref = lane.Versions(max_versions=cap), CatalogVersions(max_versions=cap)
    skus = [f"SKU-{i}" for i in range(25)] + ["雾-1", ""]
    for step in range(3000):
        sku = rnd.choice(skus)
        op = rnd.random()
        if op < 0.45:
            ts = rnd.choice([rnd.randint(-5, 40) * 1000, rnd.randint(-5, 40) * 1000 + 1])
            attrs = (sku, ts, rnd.random())  # any object: identity is compared below
            got.put(sku, ts, attrs)
            ref.put(sku, ts, attrs)
        elif op < 0.55:
            assert got.delete(sku) == ref.delete(sku), step
        elif op < 0.8:
            ts = rnd.randint(-8, 45) * 1000 + rnd.choice([-1, 0, 1])
            assert got.lookup(sku, ts) is ref.lookup(sku, ts), step
            assert got.latest(sku) is ref.latest(sku), step
        else:
            first = rnd.randint(-8, 45) * 1000
            last = first + rnd.choice([0, 999, 1000, 5000])
            a, b = got.lookup_span(sku, first, last), ref.lookup_span(sku, first, last)
            assert a is b or (a is False and b is False), step
        assert got.generation == ref.generation and len(got) == len(ref), step
        assert (sku in got) == (sku in ref) and got.skus() == ref.skus(), step
        assert got.versions_of(sku) == ref.versions_of(sku), step
    for sku in skus:
        assert got.versions_of(sku) == ref.versions_of(sku)


def test_the_compiled_catalog_versions_hold_their_references_and_refuse_misuse() -> None:
    """What it holds is released when it is replaced, dropped or deleted (reference counts
    back where they were), it joins the cyclic collector (a cycle through it is freed), and
    misuse is one clear error."""
    import gc
    import sys

    v = lane.Versions(max_versions=2)
    attrs = [object() for _ in range(4)]
    refs = [sys.getrefcount(a) for a in attrs]
    for i in range(4):  # the third and fourth push out the first two
        v.put("A", i, attrs[i])
    v.put("A", 3, attrs[3])  # the same ts: replaced by itself
    assert [a for _, a in v.versions_of("A")] == attrs[2:]
    assert v.delete("A") and not v.delete("A") and len(v) == 0
    assert [sys.getrefcount(a) for a in attrs] == refs

    class Holder:
        pass

    h = Holder()
    h.v = lane.Versions(max_versions=1)  # type: ignore[attr-defined]
    h.v.put("A", 0, h)  # type: ignore[attr-defined]  # a cycle: h -> v -> h
    import weakref

    gone = weakref.ref(h)
    del h
    gc.collect()
    assert gone() is None
    # a release that runs Python code putting again (a __del__) finds a consistent store
    w = lane.Versions(max_versions=1)

    class PutsOnDel:
        def __del__(self) -> None:
            for i in range(200):  # enough new SKUs to move the entries' array
                w.put(f"B{i}", i, i)

    w.put("A", 0, PutsOnDel())
    assert w.delete("A") and len(w) == 200 and w.lookup("B199", 5) == 199
    w.put("A", 1, "again")  # an entry freed during the delete, reused
    assert w.versions_of("A") == [(1, "again")] and len(w) == 201
    with pytest.raises(TypeError, match="Versions: made without"):
        lane.Versions.__new__(lane.Versions).lookup("A", 0)
    with pytest.raises(ValueError, match="by keyword"):
        lane.Versions()
    with pytest.raises(TypeError, match="made once"):
        v.__init__(max_versions=3)  # type: ignore[misc]
    with pytest.raises(TypeError, match="sku: str"):
        v.put(b"A", 0, None)  # type: ignore[arg-type]
    with pytest.raises(OverflowError):
        v.put("A", 2**64, None)
    assert v.lookup("A", 0) is None and v.lookup_span("A", 0, 1) is None and v.skus() == []


def test_python_code_run_inside_a_call_finds_consistent_stores() -> None:
    """Code a call may run (a key's __eq__ inside a dict lookup, a __del__ or a GC
    callback while Python objects are made) can change the store: the call must not use
    what it read before (entries that moved, ids added meanwhile). Each of these crashed
    or lost an id before it was fixed (found by review, 2026-12-06)."""
    import gc

    v = lane.Versions(max_versions=2)
    v.put("a", 1, "A1")
    calls = 0

    class Key:  # equal to "a"; its second comparison, inside the delete, moves entries
        def __hash__(self) -> int:
            return hash("a")

        def __eq__(self, other: object) -> bool:
            nonlocal calls
            calls += 1
            if calls == 2:
                for i in range(3000):
                    v.put(f"s{i}", 0, i)
            return other == "a"

    assert v.delete(Key()) is True  # type: ignore[arg-type]
    assert "a" not in v and len(v) == 3000 and v.lookup("s2999", 0) == 2999

    w = lane.Versions(max_versions=4)
    for t in range(4):
        w.put("a", t, f"A{t}")

    class Bomb:  # collected while versions_of makes its list: puts, deletes "a"
        armed = True

        def __del__(self) -> None:
            if Bomb.armed:
                Bomb.armed = False
                for i in range(3000):
                    w.put(f"s{i}", 0, i)
                w.delete("a")

    b = Bomb()
    b.me = b  # type: ignore[attr-defined]
    del b
    old = gc.get_threshold()
    gc.set_threshold(1)
    try:
        # as it was when the call read it (or already deleted, when the collection ran
        # before): never entries that moved, never a list with holes
        got = w.versions_of("a")
    finally:
        gc.set_threshold(*old)
    gc.collect()
    assert got in ([(t, f"A{t}") for t in range(4)], [])
    assert not Bomb.armed and "a" not in w and len(w) == 3000

    d = _idset(0)
    d.first_time("x", 0)
    added = []

    def late(phase: str, info: Any) -> None:  # an id added while the cut is being built
        if phase == "start" and not added:
            added.append(d.first_time("late", 1))

    gc.set_threshold(1)
    gc.callbacks.append(late)
    try:
        taken = d.cut()
    finally:
        gc.callbacks.remove(late)
        gc.set_threshold(*old)
    assert added == [True] and taken[0] == [(0, [id_hash("x")])]
    assert d.pending == 1 and d.cut()[0] == [(0, [id_hash("late")])]  # not lost


def test_extreme_values_are_refused_or_answered_as_the_reference_answers() -> None:
    from streams.core.catalog import CatalogVersions

    for impl in (lane.Versions, CatalogVersions):
        with pytest.raises(ValueError, match="max_versions <= 65536"):
            impl(max_versions=65_537)
        assert impl(max_versions=65_536).max_versions == 65_536
    for horizon, wm in ((1, -(2**63)), (2**62, -(2**62) - 1), (0, 2**63 - 1)):
        got, ref = _idset(horizon), Deduplicator(horizon)
        for d in (got, ref):
            d.first_time("a", 0)
            d.first_time("b", -(2**62))
        assert got.expire(wm) == ref.expire(wm) and len(got) == len(ref), (horizon, wm)
