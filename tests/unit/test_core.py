"""Pure core: price bands, windows, watermarks, catalog as-of lookup, dedup."""

from __future__ import annotations

from typing import Any

import pytest

from streams.core import _lanes
from streams.core.calendar import MarketCalendar
from streams.core.catalog import Catalog
from streams.core.dedup import BUCKET_MS, Deduplicator
from streams.core.pricebands import PriceBands
from streams.core.windows import Watermark


@pytest.mark.parametrize(
    ("price", "label"),
    [(0, "0-10"), (9.99, "0-10"), (10, "10-20"), (49.5, "20-50"), (50, "50-100"),
     (199.99, "100-200"), (200, "200-500"), (500, "500+"), (12_000, "500+")],
)
def test_default_price_bands(price: float, label: str) -> None:
    assert PriceBands().label(price) == label


def test_custom_price_bands_and_validation() -> None:
    bands = PriceBands([0, 2.5, 99])
    assert bands.labels == ("0-2.5", "2.5-99", "99+")
    with pytest.raises(ValueError):
        PriceBands([1, 2])
    with pytest.raises(ValueError):
        PriceBands([0, 5, 5])


def test_window_start_is_floor_in_utc() -> None:
    utc = MarketCalendar("UTC")
    ts = 1_794_398_699_999  # 2026-11-11T12:04:59.999Z
    assert utc.window(ts // 1000, 300)[0] == 1_794_398_400
    assert utc.window((ts + 1) // 1000, 300)[0] == 1_794_398_700
    assert utc.window(ts // 1000, 86_400)[0] == 1_794_355_200  # midnight UTC


def test_watermark_only_moves_forward() -> None:
    wm = Watermark(allowed_lateness_ms=600_000)
    assert wm.value is None and wm.lateness(0) == 0
    wm.observe(10_000_000)
    wm.observe(9_000_000)
    assert wm.value == 9_400_000
    assert wm.lateness(9_000_000) == 400_000
    assert wm.lateness(9_500_000) < 0


def _upsert(cat: Catalog, ts: int, color: str, price: float = 15.0) -> None:
    cat.upsert(sku="k", ts=ts, category="袜子", color=color, size="M", list_price=price,
               factory_id="F1", lead_time_days=7, moq=100)


def test_catalog_lookup_is_as_of_event_time() -> None:
    cat = Catalog()
    _upsert(cat, 1000, "雾霾蓝", 15)
    _upsert(cat, 3000, "奶白", 60)
    _upsert(cat, 2000, "樱花粉", 25)  # arrives late, sorts into place
    assert cat.lookup("k", 500).color == "雾霾蓝"  # before the first version: the oldest
    assert cat.lookup("k", 1999).color == "雾霾蓝"
    assert cat.lookup("k", 2000).price_band == "20-50"
    assert cat.lookup("k", 10**12).color == "奶白"
    assert cat.lookup("missing", 0) is None
    _upsert(cat, 3000, "black", 60)  # same ts replaces
    assert cat.latest("k").color == "black"


def test_catalog_keeps_bounded_versions() -> None:
    cat = Catalog(max_versions=3)
    for i in range(10):
        _upsert(cat, i * 10, f"c{i}")
    assert cat.lookup("k", 0).color == "c7"


def _compiled(horizon_ms: int) -> _lanes.IdSet:
    return _lanes.IdSet(horizon_ms=horizon_ms, bucket_ms=BUCKET_MS)


#: the dedup state's two implementations: the reference and the compiled core's
DEDUPS = pytest.mark.parametrize("make", [Deduplicator, _compiled], ids=["python", "compiled"])


@DEDUPS
def test_dedup_within_horizon_then_forgets(make: Any) -> None:
    d = make(2 * 3_600_000)
    assert d.first_time("a", 0)
    assert not d.first_time("a", 0)
    assert d.first_time("b", 5 * 3_600_000)
    assert d.expire(watermark_ms=3 * 3_600_000 - 1) == 0  # hour 0 still within 2 h
    assert not d.first_time("a", 0)
    assert d.expire(watermark_ms=3 * 3_600_000) == 1  # hour 0 ended 2 h before
    assert len(d) == 1
    assert d.first_time("a", 10 * 3_600_000)  # forgotten after the horizon


@DEDUPS
def test_dedup_cut_takes_new_ids_once_and_uncut_gives_them_back(make: Any) -> None:
    from streams.core.dedup import id_hash

    d = make(48 * 3_600_000)
    d.load([(0, id_hash("old")), (1, id_hash("older"))])  # persisted: never pending
    assert d.pending == 0 and not d.first_time("old", 0)
    for name, ts in [("a", 0), ("b", 3_600_000), ("c", 10)]:
        assert d.first_time(name, ts)
    first = d.cut()
    assert sorted(first[0]) == [(0, [id_hash("a"), id_hash("c")]), (1, [id_hash("b")])]
    assert d.pending == 0
    d.first_time("d", 20)  # arrives while the first cut is being written
    d.uncut(first)  # ... and that write failed
    assert d.pending == 4
    second = d.cut()
    assert sorted(second[0]) == [(0, [id_hash("a"), id_hash("c"), id_hash("d")]),
                                 (1, [id_hash("b")])]
    assert d.cut()[0] == []
    d.load([(0, id_hash("restored"))])  # loaded ids go before the cut mark, not pending
    d.first_time("e", 30)
    assert d.cut()[0] == [(0, [id_hash("e")])]


@DEDUPS
def test_id_hash_is_the_persisted_blake2b_value(make: Any) -> None:
    """Ids are persisted (dedup_ids) and reloaded by later releases: the hash must never
    change. Pinned values, and hashlib's own BLAKE2b as the oracle; ``first_time`` hashes
    inline and must agree."""
    import hashlib

    from streams.core.dedup import id_hash

    assert id_hash("a") == 3405396810240292928
    assert id_hash("订单-42") == 4782571496593221993
    d = make(3_600_000)
    for i in range(200):
        s = f"ev-{i}-{'é' * (i % 5)}"
        want = int.from_bytes(hashlib.blake2b(s.encode(), digest_size=8).digest(), "little")
        assert id_hash(s) == want
        assert d.first_time(s, 0)
    assert d.cut()[0] == [(0, [id_hash(f"ev-{i}-{'é' * (i % 5)}") for i in range(200)])]


def test_catalog_lookup_span_is_lookup_when_one_version_covers_the_span() -> None:
    cat = Catalog()
    common = {"category": "c", "size": "M", "list_price": 9.0, "factory_id": "F",
              "lead_time_days": 3, "moq": 1}
    cat.upsert(sku="k", ts=1000, color="red", **common)
    cat.upsert(sku="k", ts=2000, color="blue", **common)
    assert cat.lookup_span("missing", 0, 10) is None
    for first in range(0, 2600, 100):
        for last in range(first, 2600, 100):
            a, b = cat.lookup("k", first), cat.lookup("k", last)
            assert cat.lookup_span("k", first, last) == (a if a is b else False)
