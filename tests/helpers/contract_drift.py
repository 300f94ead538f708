"""The event contract against its fast paths, compared mechanically (issue 21, item 1).

The contract is the pydantic models of ``schemas.events``. Two fast paths mirror it by
hand: the msgspec structs of ``schemas.fastpath`` (three tiers: lenient, exact, run) and
the C scanners of ``streams/core/_lanes.c``. This module says where they differ:

- structs: every field of the models (for ``shop.logistics``, of both models: a field
  only one of them has must be optional in the one struct) with the same name, JSON type,
  required or optional, nullability, string lengths, number ranges, array sizes and
  nested objects, compared on the JSON Schemas pydantic and msgspec generate; where a
  struct leaves a check to code (``event_type`` as a plain string, ``ts`` without bounds),
  the code is probed instead (``probe_event_types``, ``probe_ts_bounds``). The one
  constraint the structs do not state is the contract's "no control characters" pattern:
  ``fast_decode`` refuses any backslash or DEL byte and JSON forbids raw control
  characters, so no string it accepts can hold one; any other pattern is drift.
- C: the JSON keys each scanner knows (``SPAN_IS(k, "...")`` in its ``*_field``
  function) against the models' field names, and the event types the C decoders accept,
  probed like msgspec's.
- both, by probing (``probe_boundaries``): every field at the contract's limits (string
  lengths in code points, number ranges, in the order lines too) must be accepted, and
  just beyond them, of another JSON type, or with no or too many lines refused: a fast
  path may say "not sure" about a valid message, but a limit it checks differently from
  the contract is drift (too loose: it accepts what the contract rejects).

Everything takes the models, structs and C source as arguments, so a test can hand it a
copy with a field added to one side and see the drift reported.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec
from pydantic import BaseModel

#: the contract's pattern for every text field (schemas.types._NO_CONTROL)
NO_CONTROL = r"^[^\x00-\x1f\x7f]*$"
#: JSON Schema keys that carry a constraint both sides can state
_KEPT = ("type", "minLength", "maxLength", "minimum", "maximum", "exclusiveMinimum",
         "exclusiveMaximum", "minItems", "maxItems", "pattern")
#: a valid event time for synthesized messages (2026-11-01T00:00:00Z)
T0 = 1_793_491_200_000


@dataclass(frozen=True)
class Field:
    required: bool
    nullable: bool
    schema: Any  # canonical: see _canon


def _resolve(s: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in s:
        s = {**defs[s["$ref"].rsplit("/", 1)[-1]], **{k: v for k, v in s.items() if k != "$ref"}}
    return s


def _canon(s: dict[str, Any], defs: dict[str, Any]) -> Any:
    """A comparable form of a (non-null) JSON Schema: constraints only, no titles,
    descriptions, formats or defaults; objects as their fields; unions as sorted lists."""
    s = _resolve(s, defs)
    if "anyOf" in s:
        branches = [_canon(b, defs) for b in s["anyOf"]]
        return {"anyOf": sorted(branches, key=lambda b: json.dumps(b, sort_keys=True))}
    if "properties" in s:
        return {"object": _fields(s, defs)}
    out: dict[str, Any] = {k: s[k] for k in _KEPT if k in s}
    if "const" in s:
        out["enum"] = [s["const"]]
        out.pop("type", None)
    if "enum" in s:
        out["enum"] = sorted(s["enum"])
        out.pop("type", None)
    if "items" in s:
        out["items"] = _canon(s["items"], defs)
    return out


def _fields(obj: dict[str, Any], defs: dict[str, Any]) -> dict[str, Field]:
    required = set(obj.get("required", ()))
    out = {}
    for name, prop in obj["properties"].items():
        prop = _resolve(prop, defs)
        nullable = False
        if "anyOf" in prop and {"type": "null"} in prop["anyOf"]:
            rest = [b for b in prop["anyOf"] if b != {"type": "null"}]
            nullable = True
            prop = rest[0] if len(rest) == 1 else {"anyOf": rest}
        out[name] = Field(name in required, nullable, _canon(prop, defs))
    return out


def model_fields(*models: type[BaseModel]) -> dict[str, Field]:
    """The fields of one model, or of several alternatives of one topic (a discriminated
    union): a field only some of them have is optional (and nullable) in the union, and
    ``event_type`` is the union of their literals."""
    per = []
    for model in models:
        schema = model.model_json_schema()
        per.append(_fields(schema, schema.get("$defs", {})))
    out: dict[str, Field] = {}
    for name in dict.fromkeys(n for fields in per for n in fields):
        have = [fields[name] for fields in per if name in fields]
        if name == "event_type":
            types = sorted({t for f in have for t in f.schema["enum"]})
            out[name] = Field(True, False, {"enum": types})
            continue
        schemas = {json.dumps(f.schema, sort_keys=True, default=repr) for f in have}
        if len(schemas) > 1:
            out[name] = Field(True, False, {"conflict": sorted(schemas)})
            continue
        everywhere = len(have) == len(per)
        out[name] = Field(
            everywhere and all(f.required for f in have),
            not everywhere or any(f.nullable for f in have),
            have[0].schema,
        )
    return out


def struct_fields(struct: type[msgspec.Struct]) -> dict[str, Field]:
    schema = msgspec.json.schema(struct)
    defs = schema.get("$defs", {})
    return _fields(_resolve(schema, defs), defs)


def _contract_side(f: Field) -> Field:
    """The model's field as the fast path must state it: the no-control-character pattern
    is enforced by the byte rules of fast_decode instead (module docstring)."""
    return Field(f.required, f.nullable, _drop_pattern(f.schema))


def _drop_pattern(s: Any) -> Any:
    if isinstance(s, dict):
        return {k: _drop_pattern(v) for k, v in s.items()
                if not (k == "pattern" and v == NO_CONTROL)}
    if isinstance(s, list):
        return [_drop_pattern(v) for v in s]
    if isinstance(s, Field):
        return _contract_side(s)
    return s


def compare_struct(
    contract: dict[str, Field], struct: dict[str, Field], where: str,
    *, ts_bounds: tuple[int, int] | None = None,
) -> list[str]:
    """Differences between the contract's fields and a struct's. A plain-string
    ``event_type`` is accepted here (``probe_event_types`` checks the code); a ``ts``
    integer without bounds takes ``ts_bounds`` (what ``probe_ts_bounds`` found)."""
    drift = []
    for name in sorted(set(contract) - set(struct)):
        drift.append(f"{where}: field {name!r} is in the contract, not in the struct")
    for name in sorted(set(struct) - set(contract)):
        drift.append(f"{where}: field {name!r} is in the struct, not in the contract")
    for name in sorted(set(contract) & set(struct)):
        want, got = _contract_side(contract[name]), struct[name]
        if name == "event_type" and got.schema == {"type": "string"}:
            got = Field(got.required, got.nullable, want.schema)
        if name == "ts":
            got = Field(got.required, got.nullable, _bounded_ts(got.schema, ts_bounds))
            want = Field(want.required, want.nullable, _bounded_ts(want.schema, None))
        if want != got:
            drift.append(f"{where}: field {name!r}: contract {want}, struct {got}")
    return drift


def _bounded_ts(schema: Any, bounds: tuple[int, int] | None) -> Any:
    """``ts`` as {integer with its bounds, string}: an integer branch without bounds
    gets the ones probed in the code (None: left without, which differs)."""
    if not isinstance(schema, dict) or "anyOf" not in schema:
        return schema
    out = []
    for b in schema["anyOf"]:
        if b.get("type") == "integer" and "minimum" not in b and bounds is not None:
            b = {**b, "minimum": bounds[0], "maximum": bounds[1]}
        out.append(b)
    return {"anyOf": sorted(out, key=lambda b: json.dumps(b, sort_keys=True))}


# ------------------------------------------------------------------ probing the code
def example(fields: dict[str, Field], *, optional: bool = False) -> dict[str, Any]:
    """A message the contract accepts built from its fields: the smallest values the
    constraints allow, every required field (and the optional ones with ``optional``)."""
    return {name: _value(name, f.schema) for name, f in fields.items()
            if f.required or optional}


def _value(name: str, s: Any) -> Any:
    if name == "ts":
        return T0
    if "enum" in s:
        return s["enum"][0]
    if "object" in s:
        return example(s["object"])
    if "anyOf" in s:
        return _value(name, s["anyOf"][0])
    kind = s.get("type")
    if kind == "string":
        return "x" * max(s.get("minLength", 1), 1)
    if kind == "integer":
        return max(s.get("minimum", 1), 1)
    if kind == "number":
        return float(max(s.get("minimum", 1), 1))
    if kind == "array":
        return [_value(name, s["items"])] * max(s.get("minItems", 1), 1)
    raise ValueError(f"no example for {name}: {s}")


def probe_event_types(
    alternatives: Sequence[type[BaseModel]],
    decode: Callable[[bytes], Any],
    others: Iterable[str],
    where: str,
) -> list[str]:
    """``decode`` (a fast path of one topic: None = not sure) must accept a message of
    every event type of the topic's models, with only the required fields and with all
    of them; and refuse one without a field its type requires, and one of an event type
    the topic does not have (``others``)."""
    drift = []
    known: set[str] = set()
    for model in alternatives:
        fields = model_fields(model)
        for etype in fields["event_type"].schema["enum"]:
            known.add(etype)
            for full in (False, True):
                msg = example(fields, optional=full) | {"event_type": etype}
                if decode(json.dumps(msg).encode()) is None:
                    drift.append(f"{where}: refuses a valid {etype!r} message "
                                 f"({'all' if full else 'required'} fields)")
            for name in sorted(n for n, f in fields.items() if f.required and n != "event_type"):
                msg = example(fields) | {"event_type": etype}
                del msg[name]
                if decode(json.dumps(msg).encode()) is not None:
                    drift.append(f"{where}: accepts a {etype!r} message without its required "
                                 f"{name!r}")
    base = example(model_fields(alternatives[0]))
    for etype in sorted(set(others) - known):
        if decode(json.dumps(base | {"event_type": etype}).encode()) is not None:
            drift.append(f"{where}: accepts event type {etype!r}, which the contract "
                         "does not have for this topic")
    return drift


def _edges(s: Any) -> tuple[list[Any], list[Any]]:
    """(values at the contract's limits, values just beyond them or of another JSON type)
    for a scalar field's schema. Strings are measured in code points, so they are made of
    a character that is three bytes in UTF-8."""
    kind = s.get("type")
    ok: list[Any] = []
    bad: list[Any] = []
    if kind == "string":
        lo, hi = s.get("minLength", 0), s.get("maxLength")
        ok.append("雾" * max(lo, 1))
        if hi is not None:
            ok.append("雾" * hi)
            bad.append("雾" * (hi + 1))
        if lo > 0:
            bad.append("雾" * (lo - 1))
        bad += [1, True]
    elif kind in ("integer", "number"):
        lo, hi = s.get("minimum"), s.get("maximum")
        cast = int if kind == "integer" else float
        ok += [cast(v) for v in (lo, hi) if v is not None]
        bad += [cast(lo) - 1] if lo is not None else []
        bad += [cast(hi) + 1] if hi is not None else []
        bad += ["1", True] + ([1.5] if kind == "integer" else [])
    return ok, bad


def probe_boundaries(
    alternatives: Sequence[type[BaseModel]], decode: Callable[[bytes], Any], where: str,
) -> list[str]:
    """``decode`` must accept every field at the contract's limits (lengths in code
    points, ranges; in the order lines too) and refuse it just beyond them, of another
    JSON type, and an empty or overlong list of lines; ``ts`` and ``event_type`` are
    probed elsewhere."""
    drift = []
    for model in alternatives:
        fields = model_fields(model)
        base = example(fields, optional=True) | {
            "event_type": fields["event_type"].schema["enum"][0]}
        for name, f in fields.items():
            if name in ("ts", "event_type"):
                continue
            if "items" in f.schema and "object" in f.schema["items"]:  # the order lines
                items = f.schema["items"]["object"]
                for sub, g in items.items():
                    ok, bad = _edges(g.schema)
                    for value, want in [(v, True) for v in ok] + [(v, False) for v in bad]:
                        line = example(items, optional=True) | {sub: value}
                        drift += _probe(decode, base | {name: [line]}, want,
                                        f"{where}: {name}[].{sub}={value!r:.40}")
                lines = [example(items)]
                for n in (f.schema.get("minItems", 0) - 1, f.schema.get("maxItems", -2) + 1):
                    if n >= 0:
                        drift += _probe(decode, base | {name: lines * n}, False,
                                        f"{where}: {n} {name}")
                continue
            ok, bad = _edges(f.schema)
            for value, want in [(v, True) for v in ok] + [(v, False) for v in bad]:
                drift += _probe(decode, base | {name: value}, want,
                                f"{where}: {name}={value!r:.40}")
    return drift


def _probe(decode: Callable[[bytes], Any], msg: dict[str, Any], want: bool,
           what: str) -> list[str]:
    got = decode(json.dumps(msg, ensure_ascii=False).encode()) is not None
    if got == want:
        return []
    verdict = "refused, the contract accepts it" if want else "accepted, the contract refuses it"
    return [f"{what}: {verdict}"]


def probe_ts_bounds(ts: Callable[[int], int | None], lo: int, hi: int) -> tuple[int, int] | None:
    """(lo, hi) when the code's integer-``ts`` check accepts exactly lo..hi at its edges."""
    if ts(lo) == lo and ts(hi) == hi and ts(lo - 1) is None and ts(hi + 1) is None:
        return lo, hi
    return None


# ------------------------------------------------------------------ the C scanners
def c_keys(source: str, function: str) -> set[str]:
    """The JSON keys a ``static int <function>(const span *k)`` of _lanes.c matches."""
    m = re.search(r"static int " + re.escape(function) + r"\(const span \*k\) \{(.*?)\n\}",
                  source, re.S)
    if m is None:
        raise ValueError(f"{function} not found in the C source")
    return set(re.findall(r'SPAN_IS\(k, "([^"]+)"\)', m.group(1)))


def compare_c_keys(contract: dict[str, Field], keys: set[str], where: str) -> list[str]:
    drift = [f"{where}: field {n!r} is in the contract, not in the C scanner"
             for n in sorted(set(contract) - keys)]
    drift += [f"{where}: field {n!r} is in the C scanner, not in the contract"
              for n in sorted(keys - set(contract))]
    return drift
