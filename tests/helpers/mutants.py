"""Generated inputs for the decoder equivalence tests: mutants of a well-formed message
(edge values, dropped, duplicated and retyped keys, byte-level edits and flips) and
RFC 3339-like timestamps, valid and not (``tests/unit/test_fastpath.py``,
``tests/unit/test_compiled_lanes.py``)."""

from __future__ import annotations

import json
import random
from typing import Any

import orjson
from hypothesis import strategies as st

_EDGE_VALUES: list[Any] = [
    None, True, False, 0, -1, 1, 1.0, 1.5, -0.0, 3.0, 999_999_999.99, 1e9, 1e9 + 1, 1e999,
    2**63, 2**64 + 1, 1_000_000, 1_000_001, 253_402_300_799_999, 253_402_300_800_000,
    "", "x", "3", "x" * 64, "x" * 65, "x" * 128, "x" * 129, "雾" * 64, "🧦" * 65, "\u202e",
    "a\x00b", "a\x7fb", "a\nb", "\ud800", "NaN", [], {}, [1], {"sku": "A"},
    "2026-11-11T12:00:00Z", "2026-02-30T12:00:00Z", "2026-11-11T24:00:00Z",
    "2026-11-11T12:60:00Z", "2026-11-11T12:00:60Z", "2026-11-11T12:00:00+24:00",
    "2026-11-11T12:00:00+08:60", "2026-11-11T12:00:00", "1970-01-01T00:00:00.5Z",
    "1969-12-31T23:59:59.999Z", "0000-01-01T00:00:00Z", "9999-12-31T23:59:59.999Z",
    "2026-11-11t12:00:00.1234567891Z", "２０２６-11-11T12:00:00Z",
]
_RAW_MUTATIONS: list[tuple[bytes, bytes]] = [
    (b'"ts":', b'"ts" : '), (b",", b", "), (b"}", b',"extra":NaN}'), (b"}", b',"x":"\xff"}'),
    (b"}", b',"deep":' + b"[" * 70 + b"]" * 70 + b"}"), (b"}", b',"n":' + b"9" * 400 + b"}"),
    (b"{", b'{"event_type":"page_view",'), (b"}", ',"备注":"好","n":[1,{"a":null}]}'.encode()),
    (b"{", b" \t\n{"), (b"}", b"} x"), (b"}", b",}"),
    (b'"', b'"\\u0041'), (b":1", b":01"), (b'"qty":', b'"qty":-'), (b'"lines":[', b'"lines":[]'),
]


def _dump(value: Any) -> bytes:
    """JSON like a shop would send it, also for values orjson refuses (huge ints, inf)."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return text.encode("utf-8", "surrogatepass")


def mutants(topic: str, raw: bytes, rng: random.Random) -> list[bytes]:
    out: list[bytes] = []
    ev = orjson.loads(raw)
    keys = list(ev)
    for _ in range(6):  # field-level: replace, drop, duplicate, retype a field
        k = rng.choice(keys)
        v = rng.choice(_EDGE_VALUES)
        m = dict(ev)
        op = rng.randrange(4)
        if op == 0:
            m[k] = v
            out.append(_dump(m))
        elif op == 1:
            del m[k]
            out.append(_dump(m))
        elif op == 2:  # duplicate key: the last one wins in both decoders
            dup = _dump({k: v})[1:-1]
            out.append(raw[:-1] + b"," + dup + b"}")
            out.append(b"{" + dup + b"," + raw[1:])
        elif "lines" in ev:
            line = dict(rng.choice(ev["lines"]))
            line[rng.choice(["sku", "qty", "unit_price", "z"])] = v
            m["lines"] = [*ev["lines"], line]
            out.append(_dump(m))
        else:
            m["event_type"] = rng.choice(
                ["page_view", "order_placed", "order_cancelled", "returned", "stock_level",
                 "shipped", "product_upsert", "PAGE_VIEW", ""]
            )
            out.append(_dump(m))
    for old, new in rng.sample(_RAW_MUTATIONS, 4):  # byte-level
        if old in raw:
            out.append(raw.replace(old, new, 1))
    for _ in range(3):  # random byte flips
        b = bytearray(raw)
        b[rng.randrange(len(b))] = rng.randrange(256)
        out.append(bytes(b))
    return out


ts_strings = st.builds(
    "{:04d}-{:02d}-{:02d}{}{:02d}:{:02d}:{:02d}{}{}".format,
    st.integers(0, 2300), st.integers(0, 13), st.integers(0, 32), st.sampled_from("Tt "),
    st.integers(0, 25), st.integers(0, 61), st.integers(0, 61),
    st.one_of(st.just(""), st.from_regex(r"\.[0-9]{1,10}", fullmatch=True)),
    st.one_of(st.sampled_from(["Z", "z", "+08:00", "-05:30", "+00:00"]),
              st.from_regex(r"[+-][0-9]{2}:[0-9]{2}", fullmatch=True)),
)
