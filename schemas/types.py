"""Field types shared by every c2m-pulse event contract.

Timestamps arrive as RFC 3339 strings (with an offset or ``Z``) or as integer epoch
milliseconds; both become integer epoch milliseconds in UTC, the only time type the
pipeline uses internally. Text fields are length-limited and may not carry control
characters; everything else (Chinese, emoji, right-to-left scripts) is stored exactly.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Annotated, Any, Final

from pydantic import BeforeValidator, Field, StringConstraints, WithJsonSchema

#: Largest accepted epoch millisecond value: 9999-12-31T23:59:59.999Z.
MAX_EPOCH_MS: Final = 253_402_300_799_999

#: The RFC 3339 grammar of event times, defined once, in its two halves: the 19-character
#: date-time and the optional fraction with the offset. ``parse_event_time`` is the one
#: parser: ``schemas.fastpath.fast_event_time`` caches its answers per minute and per
#: tail, and the compiled lanes' twin is tested to answer what fast_event_time answers.
RFC3339_DATETIME: Final = (
    r"(?P<y>\d{4})-(?P<mo>\d{2})-(?P<d>\d{2})[Tt ](?P<h>\d{2}):(?P<mi>\d{2}):(?P<s>\d{2})"
)
RFC3339_FRACTION_OFFSET: Final = r"(?:\.(?P<frac>\d{1,9}))?(?P<tz>[Zz]|[+-]\d{2}:\d{2})"
_RFC3339 = re.compile(RFC3339_DATETIME + RFC3339_FRACTION_OFFSET, re.ASCII)


def parse_event_time(value: object) -> int:
    """Return epoch milliseconds (UTC) for an RFC 3339 string or an integer epoch-ms value.

    Fractions below a millisecond are truncated. Raises ``ValueError`` with a reason
    that names the accepted forms; never echoes more than 40 characters of the input.
    """
    if isinstance(value, bool):  # bool is an int subclass: reject it explicitly
        raise ValueError("ts must be an RFC 3339 string or integer epoch milliseconds, not a bool")
    if isinstance(value, int):
        if not 0 <= value <= MAX_EPOCH_MS:
            raise ValueError("ts epoch milliseconds out of range (0 .. year 9999)")
        return value
    if isinstance(value, str):
        m = _RFC3339.fullmatch(value)
        if m is None:
            raise ValueError(
                "ts must be RFC 3339 with an offset or Z (e.g. 2026-11-11T00:00:00+08:00) "
                f"or integer epoch milliseconds, got {value[:40]!r}"
            )
        tz_text = m["tz"]
        if tz_text in ("Z", "z"):
            tz: timezone = UTC
        else:
            sign = 1 if tz_text[0] == "+" else -1
            hours, minutes = int(tz_text[1:3]), int(tz_text[4:6])
            if hours > 23 or minutes > 59:
                raise ValueError(f"ts has an invalid UTC offset {tz_text!r}")
            tz = timezone(sign * timedelta(hours=hours, minutes=minutes))
        frac = m["frac"] or ""
        try:
            dt = datetime(
                int(m["y"]), int(m["mo"]), int(m["d"]),
                int(m["h"]), int(m["mi"]), int(m["s"]),
                int((frac + "000000")[:6]), tzinfo=tz,
            )
            ms = int(dt.timestamp()) * 1000 + dt.microsecond // 1000
        except (ValueError, OverflowError) as exc:
            raise ValueError(f"ts is not a valid date-time: {exc}") from None
        if not 0 <= ms <= MAX_EPOCH_MS:
            raise ValueError("ts out of range (1970 .. year 9999)")
        return ms
    raise ValueError(
        f"ts must be an RFC 3339 string or integer epoch milliseconds, got {type(value).__name__}"
    )


def _event_time(value: Any) -> int:
    return parse_event_time(value)


#: Event time: accepted as RFC 3339 or epoch ms, held as epoch milliseconds (UTC).
EventTime = Annotated[
    int,
    BeforeValidator(_event_time),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "format": "date-time",
                 "description": "RFC 3339 with an offset or Z"},
                {"type": "integer", "minimum": 0, "maximum": MAX_EPOCH_MS,
                 "description": "epoch milliseconds, UTC"},
            ],
            "title": "Ts",
        },
        mode="validation",
    ),
]

# No C0 control characters (NUL included) and no DEL in any text field.
_NO_CONTROL = r"^[^\x00-\x1f\x7f]*$"

#: Identifiers: event, shop, order, buyer, visitor, SKU, factory.
Id = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=_NO_CONTROL)]
#: Product and order attribute values, stored exactly as sent (often Chinese: 雾霾蓝, 1-3岁).
Attr = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=_NO_CONTROL)]
#: Free text such as a return reason.
Text = Annotated[str, StringConstraints(max_length=512, pattern=_NO_CONTROL)]
#: Money in CNY: finite, non-negative, at most one billion.
Price = Annotated[float, Field(ge=0, le=1e9, allow_inf_nan=False)]
#: A positive piece count.
Qty = Annotated[int, Field(ge=1, le=1_000_000)]
