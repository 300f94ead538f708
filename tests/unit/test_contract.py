"""The event contract: accepted forms, rejected forms with their reason codes, schema drift."""

from __future__ import annotations

import json

import orjson
import pytest

from schemas import export
from schemas.contract import ContractViolation, decode
from schemas.deadletter import DeadLetter, build_dead_letter
from schemas.types import parse_event_time

ORDER = {
    "event_id": "e1",
    "event_type": "order_placed",
    "ts": "2026-11-11T20:00:00.123+08:00",
    "shop_id": "shop-1",
    "order_id": "o1",
    "region": "浙江",
    "buyer_id": "b1",
    "lines": [{"sku": "SKU-1", "qty": 2, "unit_price": 9.9}],
}


def _order(**changes: object) -> bytes:
    return orjson.dumps({**ORDER, **changes})


def _reason(topic: str, raw: bytes) -> str:
    with pytest.raises(ContractViolation) as info:
        decode(topic, raw)
    return info.value.reason


def test_valid_order_keeps_text_exactly_and_ts_as_utc_ms() -> None:
    ev = decode("shop.orders", _order(extra_field={"ignored": True}))
    assert ev.region == "浙江"
    assert ev.ts == 1_794_398_400_123  # 2026-11-11T12:00:00.123Z
    assert ev.lines[0].qty == 2


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-11-11T12:00:00Z", 1_794_398_400_000),
        ("2026-11-11T12:00:00z", 1_794_398_400_000),
        ("2026-11-11 20:00:00+08:00", 1_794_398_400_000),
        ("2026-11-11T06:30:00.5-05:30", 1_794_398_400_500),
        ("2026-11-11T12:00:00.123456789Z", 1_794_398_400_123),
        (1_794_398_400_000, 1_794_398_400_000),
        (0, 0),
    ],
)
def test_event_time_forms(value: object, expected: int) -> None:
    assert parse_event_time(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        "2026-11-11T12:00:00",
        "2026-11-11",
        "yesterday",
        "2026-13-01T00:00:00Z",
        "2026-11-11T12:00:00+25:00",
        -1,
        10**16,
        True,
        1.5,
        None,
        "２０２６-11-11T12:00:00Z",
    ],
)
def test_event_time_rejects(value: object) -> None:
    with pytest.raises(ValueError):
        parse_event_time(value)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"not json", "invalid_json"),
        (b"\xff\xfe", "invalid_json"),
        (b"[1, 2]", "not_object"),
        (b'"text"', "not_object"),
        (b"{}", "missing_field"),
        (_order(event_type="order_teleported"), "unknown_event_type"),
        (_order(ts="last tuesday"), "invalid_ts"),
        (_order(ts="2026-11-11T12:00:00"), "invalid_ts"),
        (_order(lines=[{"sku": "a", "qty": 0, "unit_price": 1}]), "invalid_field"),
        (_order(lines=[{"sku": "a", "qty": 1, "unit_price": -0.01}]), "invalid_field"),
        (_order(lines=[{"sku": "a", "qty": "1", "unit_price": 1}]), "invalid_field"),
        (_order(lines=[]), "invalid_field"),
        (_order(region=""), "invalid_field"),
        (_order(region="a\u0000b"), "invalid_field"),
        (b'{"event_id":"\\ud800"}', "invalid_json"),
        (b"[" * 5000 + b"]" * 5000, "invalid_json"),
        (_order(lines=[{"sku": "a", "qty": 1, "unit_price": 1e400}]), "invalid_field"),
    ],
)
def test_rejections_have_stable_reasons(raw: bytes, reason: str) -> None:
    assert _reason("shop.orders", raw) == reason


def test_missing_field_is_named_without_values() -> None:
    raw = orjson.dumps({k: v for k, v in ORDER.items() if k != "buyer_id"})
    with pytest.raises(ContractViolation) as info:
        decode("shop.orders", raw)
    assert info.value.reason == "missing_field"
    assert "buyer_id" in info.value.detail
    assert "浙江" not in info.value.detail


def test_size_limit_is_checked_before_parsing() -> None:
    assert _reason_limit(b"{" + b" " * 2000 + b"}") == "too_large"


def _reason_limit(raw: bytes) -> str:
    with pytest.raises(ContractViolation) as info:
        decode("shop.orders", raw, max_bytes=1024)
    return info.value.reason


def test_logistics_union() -> None:
    base = {"event_id": "l1", "ts": 0, "shop_id": "s", "sku": "k"}
    ok = decode("shop.logistics", orjson.dumps({**base, "event_type": "returned", "qty": 1}))
    assert ok.qty == 1 and ok.region is None
    level = decode(
        "shop.logistics", orjson.dumps({**base, "event_type": "stock_level", "on_hand": 0})
    )
    assert level.on_hand == 0
    assert (
        _reason("shop.logistics", orjson.dumps({**base, "event_type": "stock_level", "qty": 3}))
        == "missing_field"
    )
    assert (
        _reason("shop.logistics", orjson.dumps({**base, "event_type": "lost", "qty": 3}))
        == "unknown_event_type"
    )
    assert (
        _reason("shop.logistics", orjson.dumps({**base, "event_type": "shipped", "qty": 0}))
        == "invalid_field"
    )


def test_pageview_and_product() -> None:
    pv = {
        "event_id": "v",
        "event_type": "page_view",
        "ts": 1,
        "shop_id": "s",
        "sku": "k",
        "visitor_id": "u",
        "region": "广东",
    }
    assert decode("shop.pageviews", orjson.dumps(pv)).region == "广东"
    prod = {
        "event_id": "p",
        "event_type": "product_upsert",
        "ts": 1,
        "shop_id": "s",
        "sku": "k",
        "factory_id": "F1",
        "category": "漱口杯",
        "color": "樱花粉",
        "size": "均码",
        "list_price": 12.5,
        "lead_time_days": 10,
        "moq": 500,
    }
    assert decode("shop.products", orjson.dumps(prod)).color == "樱花粉"
    assert _reason("shop.products", orjson.dumps({**prod, "moq": 0})) == "invalid_field"
    assert (
        _reason("shop.pageviews", orjson.dumps({**pv, "event_type": "click"}))
        == "unknown_event_type"
    )


def test_json_schema_files_match_models() -> None:
    for name, doc in export.documents().items():
        path = export.JSON_DIR / name
        assert path.exists(), f"{name} missing: run python -m schemas.export"
        assert path.read_text(encoding="utf-8") == export.render(doc), (
            f"{name} drifted from the models: run python -m schemas.export"
        )
    assert export.main(["--check"]) == 0


def test_dead_letter_envelope_keeps_raw_value_and_coordinates() -> None:
    raw = b"\xff not utf8"
    env = json.loads(
        build_dead_letter(
            reason="invalid_json",
            detail="x",
            topic="shop.orders",
            partition=3,
            offset=42,
            timestamp_ms=5,
            value=raw,
        )
    )
    dl = DeadLetter.model_validate(env)
    assert dl.source.partition == 3 and dl.source.offset == 42
    assert dl.value_base64 is not None and dl.value_utf8 is None and dl.value_bytes == len(raw)
    big = build_dead_letter(
        reason="too_large",
        detail="",
        topic="t",
        partition=0,
        offset=0,
        timestamp_ms=None,
        value=b"a" * 1000,
        keep_bytes=10,
    )
    env = json.loads(big)
    assert env["value_truncated"] is True and env["value_utf8"] == "a" * 10


def test_a_null_value_on_a_topic_of_events_is_a_tombstone() -> None:
    for topic in ("shop.orders", "shop.pageviews", "shop.logistics"):
        with pytest.raises(ContractViolation) as err:
            decode(topic, None)
        assert err.value.reason == "tombstone"
