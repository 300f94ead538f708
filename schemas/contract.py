"""Topic -> contract registry and the one decoding entry point, ``decode``.

``decode`` turns the raw bytes of a Kafka message into a validated event, or raises
``ContractViolation`` carrying a stable reason code and a short, value-free detail.
Reason codes (stable, used in the dead-letter topic and in metrics):

- ``tombstone``: a null value; only the compacted catalog topic takes those (a delete)
- ``too_large``: message bigger than the configured limit (checked before parsing)
- ``invalid_json``: not UTF-8 JSON (including lone surrogates, NaN literals, deep nesting)
- ``not_object``: JSON, but not an object
- ``unknown_event_type``: ``event_type`` missing from this topic's contract
- ``missing_field``: a required field is absent
- ``invalid_ts``: ``ts`` is neither RFC 3339 with offset nor epoch milliseconds
- ``invalid_field``: any other type or range violation (qty < 1, negative price, ...)
- ``future_ts``: ``ts`` too far ahead of the record's Kafka timestamp (raised by the engine)
- ``stale_ts``: ``ts`` more than ``C2M_MAX_PAST_DAYS`` before the record timestamp (engine)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from pydantic import TypeAdapter, ValidationError

from schemas.events import (
    LogisticsEvent,
    LogisticsMovement,
    OrderEvent,
    PageViewEvent,
    ProductUpsert,
    StockLevel,
)

CONTRACT_VERSION: Final = 1

TOPIC_ORDERS: Final = "shop.orders"
TOPIC_PAGEVIEWS: Final = "shop.pageviews"
TOPIC_LOGISTICS: Final = "shop.logistics"
TOPIC_PRODUCTS: Final = "shop.products"
TOPIC_DEAD_LETTER: Final = "c2m.dead-letter"

Event = OrderEvent | PageViewEvent | LogisticsMovement | StockLevel | ProductUpsert

#: One adapter per input topic. Validation runs in pydantic-core (Rust), straight from bytes.
ADAPTERS: Final[dict[str, TypeAdapter[Any]]] = {
    TOPIC_ORDERS: TypeAdapter(OrderEvent),
    TOPIC_PAGEVIEWS: TypeAdapter(PageViewEvent),
    TOPIC_LOGISTICS: TypeAdapter(LogisticsEvent),
    TOPIC_PRODUCTS: TypeAdapter(ProductUpsert),
}
INPUT_TOPICS: Final = tuple(ADAPTERS)


@dataclass(frozen=True, slots=True)
class ContractViolation(Exception):
    """Why an event does not meet its topic's contract. ``detail`` never contains values."""

    reason: str
    detail: str

    def __str__(self) -> str:
        return f"{self.reason}: {self.detail}"


def _loc(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(p) for p in loc) or "<root>"


def _classify(exc: ValidationError) -> ContractViolation:
    errors = exc.errors(include_url=False, include_input=False, include_context=False)
    first = errors[0]
    kind, loc = first["type"], tuple(first["loc"])
    if kind == "json_invalid":
        return ContractViolation("invalid_json", str(first["msg"]))
    if not loc and kind in {"model_type", "model_attributes_type", "dict_type"}:
        return ContractViolation("not_object", "the message must be one JSON object")
    for e in errors:
        if e["type"] == "union_tag_invalid" or (
            tuple(e["loc"]) == ("event_type",) and e["type"] == "literal_error"
        ):
            return ContractViolation("unknown_event_type", f"event_type: {e['msg']}")
    detail = "; ".join(f"{_loc(tuple(e['loc']))}: {e['msg']}" for e in errors[:5])
    if len(errors) > 5:
        detail += f"; (+{len(errors) - 5} more)"
    if all(e["type"] in {"missing", "union_tag_not_found"} for e in errors):
        return ContractViolation("missing_field", detail)
    if any(e["loc"] and e["loc"][-1] == "ts" and e["type"] != "missing" for e in errors):
        return ContractViolation("invalid_ts", detail)
    return ContractViolation("invalid_field", detail)


def decode(topic: str, raw: bytes | None, max_bytes: int = 1_048_576) -> Any:
    """Validate one message of ``topic``; return the event model or raise ContractViolation."""
    if raw is None:
        raise ContractViolation("tombstone", "a null value (tombstone) on a topic of events")
    if len(raw) > max_bytes:
        raise ContractViolation("too_large", f"{len(raw)} bytes > limit {max_bytes}")
    adapter = ADAPTERS.get(topic)
    if adapter is None:
        raise ContractViolation("unknown_topic", f"no contract for topic {topic[:100]!r}")
    try:
        return adapter.validate_json(raw)
    except ValidationError as exc:
        return _raise(exc)
    except (ValueError, RecursionError) as exc:  # pragma: no cover - parser edge cases
        raise ContractViolation("invalid_json", type(exc).__name__) from None


def _raise(exc: ValidationError) -> Any:
    raise _classify(exc) from None
