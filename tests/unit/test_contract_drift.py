"""The event contract is defined once (schemas.events); its fast paths are checked against
it mechanically (tests/helpers/contract_drift.py), and the check fails when a field is
added to one path only."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec
from pydantic import BaseModel, Field, StringConstraints, create_model

from schemas import events, fastpath
from schemas.types import MAX_EPOCH_MS, Id
from streams.core import _lanes
from tests.helpers.contract_drift import (
    c_keys,
    compare_c_keys,
    compare_struct,
    model_fields,
    probe_boundaries,
    probe_event_types,
    probe_ts_bounds,
    struct_fields,
)

C_SOURCE = (Path(__file__).resolve().parents[2] / "streams/core/_lanes.c").read_text()

#: topic -> (its models, its msgspec tiers, the C scanner's key function, the C decoder)
TOPICS: dict[str, tuple[tuple[type[BaseModel], ...], tuple[type[msgspec.Struct], ...],
                        str | None, Callable[[bytes], Any] | None]] = {
    "shop.orders": ((events.OrderEvent,),
                    (fastpath.FastOrder, fastpath._OrderExact, fastpath._OrderRun),
                    "order_field", _lanes.decode_order),
    "shop.pageviews": ((events.PageViewEvent,),
                       (fastpath.FastPageView, fastpath._PageViewExact, fastpath._PageViewRun),
                       "pageview_field", _lanes.decode_pageview),
    "shop.logistics": ((events.LogisticsMovement, events.StockLevel),
                       (fastpath.FastLogistics, fastpath._LogisticsExact,
                        fastpath._LogisticsRun),
                       "logistics_field", _lanes.decode_logistics),
    "shop.products": ((events.ProductUpsert,),
                      (fastpath.FastProduct, fastpath._ProductExact), None, None),
}
#: every event type of the contract, and a few near misses
ALL_TYPES = sorted({t for models, *_ in TOPICS.values() for m in models
                    for t in model_fields(m)["event_type"].schema["enum"]}
                   | {"", "PAGE_VIEW", "page-view", "unknown"})


def drift_of(
    topic: str,
    models: Sequence[type[BaseModel]] | None = None,
    structs: Sequence[type[msgspec.Struct]] | None = None,
    c_source: str = C_SOURCE,
) -> list[str]:
    """Every difference between the contract of ``topic`` and its fast paths (the real
    ones unless others are given)."""
    real_models, real_structs, c_function, c_decode = TOPICS[topic]
    models = models or real_models
    contract = model_fields(*models)
    ts_bounds = probe_ts_bounds(fastpath._ts, 0, MAX_EPOCH_MS)
    drift = []
    for struct in structs or real_structs:
        drift += compare_struct(contract, struct_fields(struct), f"{topic} {struct.__name__}",
                                ts_bounds=ts_bounds)
    fast = lambda raw: fastpath.fast_decode(topic, raw)  # noqa: E731
    drift += probe_event_types(models, fast, ALL_TYPES, f"{topic} fast_decode")
    drift += probe_boundaries(models, fast, f"{topic} fast_decode")
    if c_function is not None and c_decode is not None:
        drift += compare_c_keys(contract, c_keys(c_source, c_function), f"{topic} C scanner")
        drift += probe_event_types(models, c_decode, ALL_TYPES, f"{topic} C decoder")
        drift += probe_boundaries(models, c_decode, f"{topic} C decoder")
    if topic == "shop.orders":  # the lines inside an order
        drift += compare_c_keys(model_fields(events.OrderLine), c_keys(c_source, "line_field"),
                                "order lines C scanner")
    return drift


def test_every_fast_path_agrees_with_the_contract() -> None:
    for topic in TOPICS:
        assert drift_of(topic) == [], topic


def test_the_ts_bounds_the_code_checks_are_the_contract_s() -> None:
    assert probe_ts_bounds(fastpath._ts, 0, MAX_EPOCH_MS) == (0, MAX_EPOCH_MS)
    assert probe_ts_bounds(fastpath._ts, 0, MAX_EPOCH_MS - 1) is None


# ---------------------------------------------------------------- the check can fail
def test_a_field_added_to_the_contract_only_is_drift() -> None:
    wider = create_model("PageViewEvent", __base__=events.PageViewEvent,
                         channel=(Id, ...))
    drift = drift_of("shop.pageviews", models=[wider])
    for where in ("FastPageView", "_PageViewExact", "_PageViewRun", "C scanner"):
        assert any(where in d and "'channel' is in the contract" in d for d in drift), where
    # and the fast paths now refuse every valid page view (it has a field they do not know
    # for the exact tiers and C; the lenient tier would still accept it)
    assert any("C decoder: refuses a valid 'page_view' message" in d for d in drift)


def test_a_field_added_to_a_struct_only_is_drift() -> None:
    wider = msgspec.defstruct("FastPageView", [("channel", str)], bases=(fastpath.FastPageView,))
    drift = drift_of("shop.pageviews", structs=[wider])
    assert drift == ["shop.pageviews FastPageView: field 'channel' is in the struct, "
                     "not in the contract"]


def test_a_key_added_to_the_c_scanner_only_is_drift() -> None:
    source = C_SOURCE.replace('SPAN_IS(k, "visitor_id") ? P_VISITOR_ID : -1;',
                              'if (SPAN_IS(k, "visitor_id")) return P_VISITOR_ID;\n'
                              '            return SPAN_IS(k, "channel_id") ? P_SKU : -1;')
    assert source != C_SOURCE
    drift = drift_of("shop.pageviews", c_source=source)
    assert drift == ["shop.pageviews C scanner: field 'channel_id' is in the C scanner, "
                     "not in the contract"]


def test_a_constraint_changed_on_one_side_is_drift() -> None:
    narrower = create_model(
        "PageViewEvent", __base__=events.PageViewEvent,
        region=(Annotated[str, StringConstraints(min_length=1, max_length=32,
                                                 pattern=r"^[^\x00-\x1f\x7f]*$")], ...))
    drift = drift_of("shop.pageviews", models=[narrower])
    assert sum("field 'region'" in d for d in drift) == 3  # all three msgspec tiers
    # and both fast paths accept 33 code points, which the narrower contract refuses
    too_long = f"region={'雾' * 33!r:.40}: accepted, the contract refuses it"
    assert f"shop.pageviews fast_decode: {too_long}" in drift
    assert f"shop.pageviews C decoder: {too_long}" in drift


def test_a_range_widened_in_the_contract_only_is_drift() -> None:
    """A price limit the fast paths check more tightly than the contract: valid orders
    at the new limit are refused by both (and the msgspec tiers differ)."""
    line = create_model("OrderLine", __base__=events.OrderLine,
                        unit_price=(Annotated[float, Field(ge=0, le=2e9)], ...))
    wider = create_model("OrderEvent", __base__=events.OrderEvent,
                         lines=(Annotated[list[line], Field(min_length=1,  # type: ignore[valid-type]
                                                            max_length=1000)], ...))
    drift = drift_of("shop.orders", models=[wider])
    at_limit = "lines[].unit_price=2000000000.0: refused, the contract accepts it"
    assert f"shop.orders fast_decode: {at_limit}" in drift
    assert f"shop.orders C decoder: {at_limit}" in drift


def test_an_optional_field_made_required_is_drift() -> None:
    stricter = create_model("LogisticsMovement", __base__=events.LogisticsMovement,
                            order_id=(Id, ...))
    drift = drift_of("shop.logistics", models=[stricter, events.StockLevel])
    # one struct serves both types, so the struct still says optional; the code must
    # require it for movements, and does not
    for where in ("fast_decode", "C decoder"):
        assert f"shop.logistics {where}: accepts a 'shipped' message without its required " \
               "'order_id'" in drift, where


def test_an_event_type_added_to_the_contract_only_is_drift() -> None:
    more = create_model("PageViewEvent", __base__=events.PageViewEvent,
                        event_type=(Literal["page_view", "page_leave"], ...))
    drift = drift_of("shop.pageviews", models=[more])
    assert any("fast_decode: refuses a valid 'page_leave' message" in d for d in drift)
    assert any("C decoder: refuses a valid 'page_leave' message" in d for d in drift)
    assert any("_PageViewRun: field 'event_type'" in d for d in drift)
