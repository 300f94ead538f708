"""The fast decoder accepts only what the contract decoder accepts, with equal values.

``schemas.fastpath.fast_decode`` answers an event or None ("not sure"); the contract
decoder (pydantic) is the reference. For every message of the simulator corpus, the chaos
poison corpus and a mutated corpus: if the fast path accepts, pydantic accepts too and
every field is equal. Rejection reasons always come from pydantic (the engine calls it
whenever the fast path says None), so they are identical by construction; the engine test
at the end checks that on whole batches.
"""

from __future__ import annotations

import random
from typing import Any

import msgspec
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas import fastpath
from schemas.contract import ContractViolation, decode
from schemas.fastpath import fast_decode, fast_decode_many, fast_event_time
from schemas.types import parse_event_time
from streams.core.config import EngineConfig
from streams.core.engine import DemandEngine, Record
from streams.sim.model import generate_history
from tests.helpers.engine import process
from tests.helpers.mutants import mutants, ts_strings
from tests.helpers.poison import POISON

T0 = 1_793_491_200_000


def _fields(ev: Any) -> dict[str, Any]:
    """The pydantic model's fields, read from either decoder's event."""
    return ev.model_dump() if hasattr(ev, "model_dump") else ev


def check(topic: str, raw: bytes) -> bool:
    """Fast path is None, or pydantic accepts with equal values. Returns "fast accepted"."""
    fast = fast_decode(topic, raw)
    if fast is None:
        return False
    try:
        slow = decode(topic, raw)
    except ContractViolation as exc:  # pragma: no cover - this is the failure we look for
        raise AssertionError(f"fast path accepted what the contract rejects: {exc}") from None
    want = slow.model_dump()
    for name, value in want.items():
        got = getattr(fast, name)
        if name == "lines":
            got = [{"sku": ln.sku, "qty": ln.qty, "unit_price": ln.unit_price} for ln in got]
        assert got == value and type(got) is type(value), (name, got, value)
    # nothing set on the fast event that the model does not have (logistics variants)
    extra = {f for f in fast.__struct_fields__ if f not in want and getattr(fast, f) is not None}
    assert not extra, extra
    return True


@pytest.fixture(scope="module")
def corpus() -> list[tuple[str, bytes]]:
    hist = generate_history(11, T0, 1.5, orders_per_hour=1500)
    return [(e.topic, orjson.dumps(e.value)) for e in hist]


def test_simulator_corpus_is_accepted_with_equal_values(corpus: list[tuple[str, bytes]]) -> None:
    topics = {t for t, _ in corpus}
    assert topics == {"shop.orders", "shop.pageviews", "shop.logistics", "shop.products"}
    accepted = sum(check(t, raw) for t, raw in corpus)
    assert accepted == len(corpus)  # every well-formed simulator message takes the fast path


def test_poison_corpus_never_takes_the_fast_path() -> None:
    for name, raw, _ in POISON:
        assert fast_decode("shop.orders", raw) is None or check("shop.orders", raw), name


def test_mutated_corpus_fast_accepts_only_what_the_contract_accepts(
    corpus: list[tuple[str, bytes]],
) -> None:
    rng = random.Random(5)
    sample = rng.sample(corpus, 1500)
    fast = total = 0
    for topic, raw in sample:
        for mutant in mutants(topic, raw, rng):
            total += 1
            fast += check(topic, mutant)
    assert total > 10_000 and 0 < fast < total  # both paths exercised


@settings(max_examples=1000, deadline=None)
@given(ts_strings)
def test_fast_event_time_equals_parse_event_time(value: str) -> None:
    got = fast_event_time(value)
    try:
        want: int | None = parse_event_time(value)
    except ValueError:
        want = None
    assert got is None or got == want
    if want is not None and 1_000 <= want < 2**33 * 1000 - 86_400_000:
        assert got == want  # the fast path answers for every ordinary valid time


def test_engine_gives_the_same_outcome_with_and_without_the_fast_path(
    corpus: list[tuple[str, bytes]],
) -> None:
    rng = random.Random(9)
    messages: list[tuple[str, bytes]] = []
    for topic, raw in corpus[:10_000]:
        if topic == "shop.products":
            continue
        messages.append((topic, raw))
        if rng.random() < 0.05:
            messages.extend((topic, m) for m in mutants(topic, raw, rng)[:2])
    results = []
    for fast in (True, False):
        eng = DemandEngine(EngineConfig(fast_paths=fast))
        for i, (t, raw) in enumerate(corpus):
            if t == "shop.products":
                eng.apply_product(Record(t, 0, i, None, None, raw))
        ref = T0 + 4 * 3_600_000
        recs = [Record(t, 0, i, ref, None, raw) for i, (t, raw) in enumerate(messages)]
        out = process(eng, recs)
        batch = eng.flush_batch()
        results.append((
            [(r.record.offset, r.reason, r.detail) for r in out.rejected],
            [(e.record.offset, e.event_id, e.ts_ms) for e in out.late],
            sorted(batch.rows), sorted(batch.visitor_rows), sorted(batch.dedup_rows),
            batch.checkpoints,
        ))
    assert results[0] == results[1]
    assert results[0][0]  # mutants were rejected, with the contract's reasons


def _product(sku: str, ts: int, color: str, price: float) -> bytes:
    return orjson.dumps({
        "event_id": f"p-{sku}-{ts}", "event_type": "product_upsert", "ts": ts, "shop_id": "s",
        "sku": sku, "factory_id": "F1", "category": "袜子", "color": color, "size": "M",
        "list_price": price, "lead_time_days": 7, "moq": 10,
    })


def _view(i: int, sku: str, ts: int) -> bytes:
    return orjson.dumps({
        "event_id": f"v{i}", "ts": ts, "shop_id": "s", "event_type": "page_view", "sku": sku,
        "visitor_id": f"u{i % 7}", "region": "浙江" if i % 2 else "广东",
    })


def test_page_view_lane_matches_the_reference_path() -> None:
    """Catalog versions changing inside a 5-minute grain, a catalog update between batches,
    unknown SKUs: the page-view lane gives what the reference path gives."""
    t = T0 + 3_600_000
    products = [_product("A", 0, "red", 15.0), _product("A", t + 120_000, "blue", 55.0),
                _product("B", 0, "green", 5.0)]
    later = _product("B", t + 800_000, "black", 250.0)  # arrives between the two batches
    views = [_view(i, "ABC"[i % 3], t + i * 7_000) for i in range(200)]
    results = []
    for fast in (True, False):
        eng = DemandEngine(EngineConfig(fast_paths=fast))
        for i, raw in enumerate(products):
            assert eng.apply_product(Record("shop.products", 0, i, None, None, raw)) is None
        recs = [Record("shop.pageviews", 0, i, t + 10**7, None, raw)
                for i, raw in enumerate(views)]
        process(eng, recs[:100])
        eng.apply_product(Record("shop.products", 0, 9, None, None, later))
        process(eng, recs[100:])
        batch = eng.flush_batch()
        st = eng.states[("shop.pageviews", 0)]
        results.append((sorted(batch.rows), sorted(batch.visitor_rows), sorted(batch.sku_rows),
                        st.ledger))
    assert results[0] == results[1]
    assert results[0][3].unknown_sku_lines == 66  # SKU C is not in the catalog
    colors = {r[5] for r in results[0][0]}
    assert {"red", "blue", "green", "black", "unknown"} <= colors


@pytest.mark.parametrize("price", [
    b"1e-400", b"-1e-400", b"1E400", b"0.0000000000000000000000000000001", b"-0", b"-0.0",
    b"999999999.99999999999", b"1000000000.0000000001", b"1000000000.000001",
    b"12345678901234567890", b"9.95", b"1e2", b"0e0",
])
def test_number_edge_cases_agree(price: bytes) -> None:
    raw = (b'{"event_id":"e","ts":1793491200000,"shop_id":"s","event_type":"order_placed",'
           b'"order_id":"o","region":"r","buyer_id":"b","lines":[{"sku":"A","qty":1,'
           b'"unit_price":' + price + b"}]}")
    check("shop.orders", raw)


@settings(max_examples=500, deadline=None)
@given(st.sampled_from(["2026-11-01T08:00:00", "2026-02-29T08:00:00", "2026-11-01T24:00:00"]),
       st.text(max_size=12))
def test_fast_event_time_with_any_tail_agrees(head: str, tail: str) -> None:
    """The cached halves never let a bad tail (or a bad head) through."""
    for value in (head + tail, head + ".5Z", head[:-1] + tail):
        got = fast_event_time(value)
        try:
            want: int | None = parse_event_time(value)
        except ValueError:
            want = None
        assert got is None or got == want, value


def test_the_fast_path_asks_the_contract_parser(monkeypatch: pytest.MonkeyPatch) -> None:
    """fast_event_time holds no parser of its own: what it does not have cached, it asks
    ``parse_event_time`` (one minute, one tail), then answers from its caches."""
    from schemas import fastpath

    asked: list[str] = []

    def spy(value: object) -> int:
        asked.append(str(value))
        return parse_event_time(value)

    monkeypatch.setattr(fastpath, "parse_event_time", spy)
    monkeypatch.setattr(fastpath, "_HEADS", {})
    monkeypatch.setattr(fastpath, "_TAILS", {})
    first = fastpath.fast_event_time("2026-11-11T08:15:42.123+08:00")
    assert first == parse_event_time("2026-11-11T08:15:42.123+08:00")
    assert asked == ["2026-11-11T08:15:00Z", "2000-01-01T00:00:00.123+08:00"]
    again = fastpath.fast_event_time("2026-11-11T08:15:59.123+08:00")
    assert again == parse_event_time("2026-11-11T08:15:59.123+08:00")
    assert len(asked) == 2  # both halves from the caches
    assert fastpath.fast_event_time("2026-11-11T08:15:59.123+25:00") is None


def _many_equals_one_by_one(topic: str, values: list[Any]) -> list[Any]:
    """The same answers, field by field (the run path builds its own struct types)."""
    got = fast_decode_many(topic, values)
    want = [fast_decode(topic, v) for v in values]
    assert [msgspec.to_builtins(ev) for ev in got] == [
        msgspec.to_builtins(ev) for ev in want
    ], topic
    return got


def test_runs_decoded_as_one_buffer_equal_one_by_one(corpus: list[tuple[str, bytes]]) -> None:
    """The simulator's runs take the one-buffer path and answer what fast_decode answers."""
    by_topic: dict[str, list[bytes]] = {}
    for topic, raw in corpus:
        by_topic.setdefault(topic, []).append(raw)
    for topic in ("shop.orders", "shop.pageviews", "shop.logistics"):
        values = by_topic[topic]
        for i in range(0, len(values), 500):
            run = values[i : i + 500]
            blob = fastpath._joined(run, 1_048_576)
            assert blob is not None  # the fast way is taken ...
            assert len(fastpath._BATCH_DECODERS[topic](blob)) == len(run)  # ... all of it
            assert all(ev is not None for ev in _many_equals_one_by_one(topic, run))


def test_runs_with_mutants_equal_one_by_one(corpus: list[tuple[str, bytes]]) -> None:
    """Runs mixing good messages, mutants, tombstones and oversized messages."""
    rng = random.Random(13)
    demand = [(t, raw) for t, raw in corpus if t != "shop.products"]
    for _ in range(300):
        topic, raw = rng.choice(demand)
        same = [r for t, r in rng.sample(demand, 60) if t == topic]
        run: list[Any] = [raw, *same]
        for mutant in mutants(topic, raw, rng)[:3]:
            run.insert(rng.randrange(len(run) + 1), mutant)
        if rng.random() < 0.1:
            run.insert(rng.randrange(len(run) + 1), None)
        _many_equals_one_by_one(topic, run)
        _many_equals_one_by_one(topic, [r for r in run if r is not None])


@pytest.mark.parametrize(
    ("topic", "field", "bad"),
    [
        ("shop.pageviews", "event_type", "order_placed"),
        ("shop.orders", "event_type", "page_view"),
        ("shop.logistics", "event_type", "teleported"),
        ("shop.pageviews", "ts", -1),
        ("shop.orders", "ts", 10**15),
        ("shop.logistics", "ts", -5),
    ],
)
def test_a_run_with_a_wrong_type_or_time_is_answered_message_by_message(
    corpus: list[tuple[str, bytes]], topic: str, field: str, bad: object
) -> None:
    """The run structs check event types and integer times in C: one bad message fails
    the run's decode, and each message then gets its own answer (None for the bad one)."""
    run = [raw for t, raw in corpus if t == topic][:50]
    ev = orjson.loads(run[7])
    ev[field] = bad
    run[7] = orjson.dumps(ev)
    blob = fastpath._joined(run, 1_048_576)
    assert blob is not None
    with pytest.raises(msgspec.ValidationError):
        fastpath._BATCH_DECODERS[topic](blob)
    got = _many_equals_one_by_one(topic, run)
    assert got[7] is None
    assert all(ev is not None for i, ev in enumerate(got) if i != 7)


def test_messages_that_are_not_one_object_each_never_line_up_wrongly(
    corpus: list[tuple[str, bytes]],
) -> None:
    """Good messages glued together and cut at other places (two objects in one message,
    one object over two messages, whitespace and newlines at the edges): the answers are
    still the one-by-one answers, so no event is given to the wrong message."""
    rng = random.Random(21)
    views = [raw for t, raw in corpus if t == "shop.pageviews"][:400]
    for _ in range(400):
        k = rng.randint(2, 6)
        glued = b"".join(rng.sample(views, k))
        cuts = sorted(rng.sample(range(1, len(glued)), rng.randint(1, k)))
        parts = [glued[a:b] for a, b in zip([0, *cuts], [*cuts, len(glued)], strict=True)]
        _many_equals_one_by_one("shop.pageviews", parts)
    a, b = views[0], views[1]
    for run in (
        [a + b, b], [a, a + b], [a[:-1], b"}" + b], [a + b"\n", b], [b" " + a, b],
        [a, b"\n" + b], [a[:-1] + b"\n}", b], [a, b"{}"], [a, b""], [a + b"{}", b],
        [a + b"\n" + b, a],  # two objects in one message, over a newline
        # a value open at the end of one message and closed in the next, made up for by
        # a message holding two: the count alone would be n, the framing rule catches it
        [a[:-1] + b',"x":', b"{}}", a + b"\n" + b],
        [a[:-1] + b',"x":{}', b"{}}", a + b" " + b],
    ):
        _many_equals_one_by_one("shop.pageviews", run)
    # newlines as whitespace inside a message: decoded the one-buffer way, same answers
    spaced = [a.replace(b",", b",\n", 2), b.replace(b":", b"\n:\n", 1)]
    assert fastpath._joined(spaced, 1_048_576) is not None
    assert all(ev is not None for ev in _many_equals_one_by_one("shop.pageviews", spaced))
