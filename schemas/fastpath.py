"""Fast decoding of the common, well-formed event shapes: accept only when sure.

``fast_decode(topic, raw)`` returns an event (a ``msgspec.Struct`` with the same field
names and values as the pydantic model ``schemas.contract.decode`` returns, ``ts`` already
in epoch milliseconds) or ``None``. ``None`` never means "invalid": it means "not sure",
and the caller then runs the contract decoder, which accepts or rejects with its reason
code. Rejections therefore always come from ``schemas.contract.decode`` and keep their
reason codes by construction; this module only has to be right about what it accepts.

It accepts a message only when all of these hold, otherwise it answers ``None``:

- the bytes contain no backslash and no DEL byte (so no JSON escape, no lone surrogate
  and no control character can be inside any string: raw control characters are invalid
  JSON and msgspec rejects them), and are valid UTF-8 (msgspec checks every string it
  decodes; when a message has fields beyond the contract's, the whole message is checked);
- nesting is far below pydantic's recursion limit (200): shorter than 256 bytes, or at
  most 64 ``{``/``[`` bytes;
- msgspec decodes it into the topic's struct below: the same field names, types (strict:
  no ``"3"`` for 3, no bool for an int, no float for an int), lengths (in code points)
  and ranges as ``schemas.events``; unknown fields are skipped as pydantic ignores them
  (pydantic and msgspec both keep the last of duplicate keys);
- ``event_type`` is one of the topic's literals and the fields that type requires are
  present; ``ts`` is an integer in range or an RFC 3339 string that ``fast_event_time``
  converts exactly (it too answers ``None`` when unsure).

``fast_decode_many(topic, values)`` answers the same for a run of messages, decoding the
run as one buffer when it safely can (see the comment above it).

The equivalence is tested on the simulator corpus, the chaos poison corpus and generated
and mutated corpora (``tests/unit/test_fastpath.py``): every message accepted here is
accepted by the contract decoder with equal field values.
"""

from __future__ import annotations

from collections.abc import Callable
from operator import itemgetter
from typing import Annotated, Any, Final, Literal

import msgspec

from schemas.contract import TOPIC_LOGISTICS, TOPIC_ORDERS, TOPIC_PAGEVIEWS, TOPIC_PRODUCTS
from schemas.types import MAX_EPOCH_MS, parse_event_time

_Id = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
_Attr = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
_Text = Annotated[str, msgspec.Meta(max_length=512)]
_Price = Annotated[float, msgspec.Meta(ge=0, le=1e9)]
_Qty = Annotated[int, msgspec.Meta(ge=1, le=1_000_000)]


class FastOrderLine(msgspec.Struct):
    sku: _Id
    qty: _Qty
    unit_price: _Price


class FastOrder(msgspec.Struct):
    event_id: _Id
    ts: int | str
    shop_id: _Id
    event_type: str
    order_id: _Id
    region: _Attr
    buyer_id: _Id
    lines: Annotated[list[FastOrderLine], msgspec.Meta(min_length=1, max_length=1000)]


class FastPageView(msgspec.Struct):
    event_id: _Id
    ts: int | str
    shop_id: _Id
    event_type: str
    sku: _Id
    visitor_id: _Id
    region: _Attr


class FastLogistics(msgspec.Struct):
    """Movements and stock levels in one struct; ``event_type`` says which fields count."""

    event_id: _Id
    ts: int | str
    shop_id: _Id
    event_type: str
    sku: _Id
    order_id: _Id | None = None
    region: _Attr | None = None
    reason: _Text | None = None
    factory_id: _Id | None = None
    qty: _Qty | None = None
    on_hand: Annotated[int, msgspec.Meta(ge=0, le=1_000_000_000)] | None = None


class FastProduct(msgspec.Struct):
    event_id: _Id
    ts: int | str
    shop_id: _Id
    event_type: str
    sku: _Id
    factory_id: _Id
    category: _Attr
    color: _Attr
    size: _Attr
    list_price: _Price
    lead_time_days: Annotated[int, msgspec.Meta(ge=0, le=365)]
    moq: Annotated[int, msgspec.Meta(ge=1, le=10_000_000)]


FastEvent = FastOrder | FastPageView | FastLogistics | FastProduct

_MOVEMENTS: Final = frozenset(
    {"shipped", "delivered", "returned", "restock_shipped", "restock_received"}
)
_ORDER_TYPES: Final = frozenset({"order_placed", "order_cancelled"})

# fast_event_time has no parser of its own: it caches what the contract's one parser
# (schemas.types.parse_event_time) answers for the two halves of a timestamp, cut where it
# can only be cut (the date-time part is always exactly 19 characters).
#: Largest whole-second value for which float(seconds + microseconds) truncates exactly.
_MAX_EXACT_S: Final = 2**33
_CACHE_MAX: Final = 100_000
# "YYYY-MM-DDTHH:MM" -> epoch seconds of its second 0 in UTC, or -1 when not valid.
_HEADS: dict[str, int] = {}
# ":00" .. ":59" -> the second
_SECONDS: Final = {f":{s:02d}": s for s in range(60)}
# ".123Z", "+08:00", ... -> milliseconds it adds to a UTC date-time (the fraction's
# milliseconds minus the offset), or None when not valid.
_TAILS: dict[str, int | None] = {}
#: the reference date-time a tail is parsed after (any whole second far from both ends)
_REFERENCE: Final = "2000-01-01T00:00:00"
_REFERENCE_MS: Final = 946_684_800_000


def _head_seconds(head: str) -> int:
    """``head`` ("YYYY-MM-DDTHH:MM:00") in UTC, by the contract's parser."""
    try:
        return parse_event_time(head + "Z") // 1000
    except ValueError:
        return -1


def _tail_ms(tail: str) -> int | None:
    """What ``tail`` adds to a date-time in UTC, by the contract's parser."""
    try:
        return parse_event_time(_REFERENCE + tail) - _REFERENCE_MS
    except ValueError:
        return None


_NO_TAIL: Final = -(2**62)


def fast_event_time(value: str) -> int | None:
    """Epoch ms of an RFC 3339 string exactly as ``parse_event_time`` computes it, or None.

    Only answers for times after 1970-01-01T00:00:01Z and before 2242 (where the
    original's float ``timestamp()`` truncation is exact); None means "use the original".
    The date-time half is validated per minute ("YYYY-MM-DDTHH:MM", cached, bounded) and
    its ":SS" by a table; the fraction-and-offset half is validated once and cached.
    """
    minute = value[:16]  # the cache is per minute: "YYYY-MM-DDTHH:MM"
    base = _HEADS.get(minute)
    if base is None:
        if len(_HEADS) >= _CACHE_MAX:
            _HEADS.clear()
        base = _HEADS[minute] = _head_seconds(minute + ":00")
    second = _SECONDS.get(value[16:19], -1)  # ":SS"
    if base < 0 or second < 0:
        return None
    tail = value[19:]
    add = _TAILS.get(tail, _NO_TAIL)
    if add == _NO_TAIL:
        if len(_TAILS) >= _CACHE_MAX:
            _TAILS.clear()
        add = _TAILS[tail] = _tail_ms(tail)
    if add is None:
        return None
    total = (base + second) * 1000 + add
    if not 0 < total // 1000 < _MAX_EXACT_S:
        return None
    return total


def _ts(value: int | str) -> int | None:
    if isinstance(value, int):
        return value if 0 <= value <= MAX_EPOCH_MS else None
    return fast_event_time(value)


def _plain(raw: bytes) -> bool:
    """No escapes, no DEL, nesting far below pydantic's limit: cases both decoders agree on.

    A message shorter than 256 bytes cannot nest deeper than 128 levels; pydantic's JSON
    parser accepts up to 200.
    """
    return not (
        b"\\" in raw
        or b"\x7f" in raw
        or (len(raw) > 256 and raw.count(b"{") + raw.count(b"[") > 64)
    )


def _utf8(raw: bytes) -> bool:
    if raw.isascii():
        return True
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _decoder(struct: type[Any], exact: type[Any]) -> Callable[[bytes], Any]:
    """Decode with ``exact`` (the same struct, unknown fields forbidden) first: when the
    message has no other fields msgspec has read, and so validated, every byte of it.
    Otherwise decode with ``struct``, skipping unknown fields as pydantic ignores them,
    after checking that the whole message is valid UTF-8 (msgspec does not look inside
    the values it skips; pydantic rejects invalid UTF-8 anywhere)."""
    first = msgspec.json.Decoder(exact).decode
    second = msgspec.json.Decoder(struct).decode

    def decode(raw: bytes) -> Any:
        try:
            return first(raw)
        except msgspec.ValidationError:
            pass  # an unknown field, or an invalid value: the second decoder decides
        if not _utf8(raw):
            return None
        return second(raw)

    return decode


class _OrderLineExact(FastOrderLine, forbid_unknown_fields=True):
    pass


class _OrderExact(FastOrder, forbid_unknown_fields=True):
    lines: Annotated[  # type: ignore[assignment]
        list[_OrderLineExact], msgspec.Meta(min_length=1, max_length=1000)
    ]


class _PageViewExact(FastPageView, forbid_unknown_fields=True):
    pass


class _LogisticsExact(FastLogistics, forbid_unknown_fields=True):
    pass


class _ProductExact(FastProduct, forbid_unknown_fields=True):
    pass


_dec_order = _decoder(FastOrder, _OrderExact)
_dec_pageview = _decoder(FastPageView, _PageViewExact)
_dec_logistics = _decoder(FastLogistics, _LogisticsExact)
_dec_product = _decoder(FastProduct, _ProductExact)
_Error = (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError)


def _message_decoder(
    decode: Callable[[bytes], Any], fields_ok: Callable[[Any], bool]
) -> Callable[[bytes], Any]:
    """One message of a topic: its struct (``decode``), the topic's type and field rules
    (``fields_ok``, which may clear fields pydantic ignores) and the time, or None."""

    def fast(raw: bytes) -> Any:
        try:
            ev = decode(raw)
        except _Error:
            return None
        if ev is None or not fields_ok(ev):
            return None
        ts = _ts(ev.ts)
        if ts is None:
            return None
        ev.ts = ts
        return ev

    return fast


def _logistics_fields(ev: Any) -> bool:
    kind = ev.event_type
    if kind in _MOVEMENTS:
        if ev.qty is None:
            return False
        ev.on_hand = None  # pydantic ignores it for a movement
        return True
    if kind == "stock_level":
        if ev.on_hand is None:
            return False
        ev.qty = None  # ignored for a stock level
        return True
    return False


_BY_TOPIC: Final[dict[str, Callable[[bytes], Any]]] = {
    TOPIC_ORDERS: _message_decoder(_dec_order, lambda ev: ev.event_type in _ORDER_TYPES),
    TOPIC_PAGEVIEWS: _message_decoder(_dec_pageview, lambda ev: ev.event_type == "page_view"),
    TOPIC_LOGISTICS: _message_decoder(_dec_logistics, _logistics_fields),
    TOPIC_PRODUCTS: _message_decoder(_dec_product, lambda ev: ev.event_type == "product_upsert"),
}


def fast_decode(topic: str, raw: bytes | None, max_bytes: int = 1_048_576) -> Any:
    """The event for ``raw`` if it is surely valid for ``topic``, else None (use ``decode``)."""
    if raw is None or len(raw) > max_bytes or not _plain(raw):
        return None
    dec = _BY_TOPIC.get(topic)
    return None if dec is None else dec(raw)


# --------------------------------------------------------------------------- many at once
# A run of messages of one topic is decoded as one buffer, the messages joined by "\n",
# with msgspec's ``decode_lines`` and the exact structs (unknown fields forbidden). That
# saves the per-message calls and checks; the answer for each message is the one
# ``fast_decode`` gives (tested), and it is only used when all of these hold:
#
# - every message starts with "{" and ends with "}". Then each "\n" joining two messages
#   follows a "}" that closes a top-level value: inside a string a raw newline is invalid,
#   and after a "}" that closes a nested value the next token must be "," "}" or "]",
#   never the "{" that starts the next message. So no value runs from one message into
#   the next and every message holds at least one value: "exactly n values back" means
#   exactly one per message (a message holding two objects makes it n + 1). Newlines
#   inside a message are whitespace to msgspec's ``decode_lines`` as to ``fast_decode``;
# - the buffer has no backslash and no DEL byte, and no message is longer than 256 bytes
#   with more than 64 "{"/"[" or longer than ``max_bytes`` (the ``_plain`` rules);
# - the run's decoder (the exact struct, with the checks below) accepts every message and
#   the count is n.
#
# Otherwise each message goes through ``fast_decode`` on its own.
#
# The run structs also check in C what the per-message path checks in Python: the event
# types of the topic (a Literal) and the range of an integer ``ts``. A run with any other
# value fails as a whole and goes message by message, where the answer is the same.
_Ts = Annotated[int, msgspec.Meta(ge=0, le=MAX_EPOCH_MS)] | str


class _OrderRun(_OrderExact, forbid_unknown_fields=True):
    ts: _Ts
    event_type: Literal["order_placed", "order_cancelled"]


class _PageViewRun(_PageViewExact, forbid_unknown_fields=True):
    ts: _Ts
    event_type: Literal["page_view"]


class _LogisticsRun(_LogisticsExact, forbid_unknown_fields=True):
    ts: _Ts
    event_type: Literal[
        "shipped", "delivered", "returned", "restock_shipped", "restock_received",
        "stock_level",
    ]


_BATCH_DECODERS: Final[dict[str, Callable[[bytes], list[Any]]]] = {
    TOPIC_ORDERS: msgspec.json.Decoder(_OrderRun).decode_lines,
    TOPIC_PAGEVIEWS: msgspec.json.Decoder(_PageViewRun).decode_lines,
    TOPIC_LOGISTICS: msgspec.json.Decoder(_LogisticsRun).decode_lines,
}


_FIRST: Final = itemgetter(0)
_LAST: Final = itemgetter(-1)


def _joined(values: list[bytes], max_bytes: int) -> bytes | None:
    """The messages joined by newlines, if the run meets the rules above, else None."""
    try:
        blob = b"\n".join(values)
    except TypeError:  # a tombstone (None) in the run
        return None
    n = len(values)
    try:
        framed = bytes(map(_FIRST, values)) == b"{" * n and bytes(map(_LAST, values)) == b"}" * n
    except IndexError:  # an empty message
        return None
    if not framed or b"\\" in blob or b"\x7f" in blob:
        return None
    longest = max(map(len, values))
    if longest > max_bytes:
        return None
    if longest > 256:
        for raw in values:
            if len(raw) > 256 and raw.count(b"{") + raw.count(b"[") > 64:
                return None
    return blob


def _with_times(evs: list[Any]) -> list[Any]:
    """Event types and integer times are checked by the run structs: convert the RFC 3339
    string times (None where ``fast_event_time`` is unsure)."""
    for i, ev in enumerate(evs):
        ts = ev.ts
        if ts.__class__ is str:
            ts = fast_event_time(ts)
            if ts is None:
                evs[i] = None
            else:
                ev.ts = ts
    return evs


def _checked_logistics(evs: list[Any]) -> list[Any]:
    for i, ev in enumerate(evs):
        if ev.event_type == "stock_level":
            if ev.on_hand is None:
                evs[i] = None
                continue
            ev.qty = None  # ignored for a stock level
        else:  # a movement (the struct admits no other type)
            if ev.qty is None:
                evs[i] = None
                continue
            ev.on_hand = None  # pydantic ignores it for a movement
        ts = ev.ts
        if ts.__class__ is str:
            ts = fast_event_time(ts)
            if ts is None:
                evs[i] = None
            else:
                ev.ts = ts
    return evs


_BATCH_CHECKS: Final[dict[str, Callable[[list[Any]], list[Any]]]] = {
    TOPIC_ORDERS: _with_times,
    TOPIC_PAGEVIEWS: _with_times,
    TOPIC_LOGISTICS: _checked_logistics,
}


def fast_decode_many(
    topic: str, values: list[bytes | None], max_bytes: int = 1_048_576
) -> list[Any]:
    """``[fast_decode(topic, v, max_bytes) for v in values]``, decoded as one buffer when
    the run allows it (see above); None entries mean "not sure" as in ``fast_decode``."""
    dec = _BATCH_DECODERS.get(topic)
    if dec is not None and len(values) > 1:
        blob = _joined(values, max_bytes)  # type: ignore[arg-type]
        if blob is not None:
            try:
                evs = dec(blob)
            except _Error:
                evs = None
            if evs is not None and len(evs) == len(values):
                return _BATCH_CHECKS[topic](evs)
    return [fast_decode(topic, raw, max_bytes) for raw in values]
