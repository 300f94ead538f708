"""Per-factory names on a shared cluster (pure): factory id -> Kafka topic, ACL prefixes,
consumer groups and ClickHouse user names.

Factory ids are free text (the contract allows 1..128 characters of anything but control
characters, Chinese included); Kafka topic names allow ``[a-zA-Z0-9._-]`` and at most 249
characters. The mapping (``component``) is deterministic and collision-free:

1. take the UTF-8 bytes of the id, exactly as the catalog has it (no normalisation);
2. keep each byte in ``[A-Za-z0-9-]``; write every other byte (``.``, ``_``, a space, each
   byte of a Chinese character, ...) as ``_`` followed by its two upper-case hex digits:
   ``F001`` -> ``F001``, ``f.1`` -> ``f_2E1``,
   ``义乌袜厂`` -> ``_E4_B9_89_E4_B9_8C_E8_A2_9C_E5_8E_82``;
3. when that is longer than ``MAX_PLAIN`` (100) characters: its first characters up to
   ``KEEP`` (64, never cutting an escape) + ``__`` + the first 32 hex digits of the
   SHA-256 of the id's bytes.

Why it is collision-free: the plain form (2) is a prefix-free code of the bytes, so two
ids give the same plain form only if they are the same id; a plain form never holds
``__`` (every ``_`` is followed by a hex digit), a shortened one (3) always does, so the two
kinds never meet; two shortened forms differ in their 128-bit hash unless SHA-256 collides.

A component never holds a ``.``, so the ACL prefix of a factory (``factory.<c>.``) is
never a prefix of another factory's topic (``factory.F1.`` does not match
``factory.F10.restock-alerts``) nor of the shared topics ``factory.restock-alerts`` and
``factory.demand-signals`` (no second dot). Kafka warns about topic names that differ only
in ``.`` versus ``_``: two components never do (neither holds a dot). Names differ by case
where ids do (``f001`` and ``F001`` are two factories); brokers on a case-insensitive file
system cannot hold both, as with any Kafka topic names.
"""

from __future__ import annotations

import hashlib
import re
from typing import Final

#: the shared topic every restock alert went to before per-factory topics (now opt-in)
SHARED_RESTOCK_TOPIC: Final = "factory.restock-alerts"
TOPIC_PREFIX: Final = "factory."
RESTOCK_SUFFIX: Final = ".restock-alerts"
MAX_PLAIN: Final = 100
KEEP: Final = 64
#: Kafka's limit on topic names
MAX_TOPIC: Final = 249

_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-")
_COMPONENT = re.compile(r"[A-Za-z0-9_-]+")
_RESTOCK = re.compile(r"factory\.([A-Za-z0-9_-]+)\.restock-alerts")
_ESCAPE = re.compile(r"_([0-9A-F]{2})")


class BadFactoryId(ValueError):
    """Not a factory id the event contract accepts."""


def check_factory_id(factory_id: str) -> str:
    """The id if the contract could carry it (1..128 characters, no control characters)."""
    if not 1 <= len(factory_id) <= 128 or any(
        ord(c) < 32 or 127 <= ord(c) < 160 for c in factory_id
    ):
        raise BadFactoryId("a factory id is 1 to 128 characters without control characters")
    return factory_id


def component(factory_id: str) -> str:
    """The factory's name part in topics, ACLs, groups and user names (see module doc)."""
    raw = check_factory_id(factory_id).encode("utf-8")
    plain = "".join(chr(b) if b in _SAFE else f"_{b:02X}" for b in raw)
    if len(plain) <= MAX_PLAIN:
        return plain
    cut = KEEP
    # never cut inside an escape: back up to the "_" that starts it
    for i in (cut - 1, cut - 2):
        if plain[i] == "_":
            cut = i
    return plain[:cut] + "__" + hashlib.sha256(raw).hexdigest()[:32]


def factory_of(component_: str) -> str | None:
    """The factory id of a plain component; None for a shortened (hashed) one or text that
    is not a component."""
    if not _COMPONENT.fullmatch(component_) or "__" in component_:
        return None
    out = bytearray()
    i = 0
    while i < len(component_):
        m = _ESCAPE.match(component_, i)
        if m is not None:
            out.append(int(m[1], 16))
            i = m.end()
        elif component_[i] == "_":
            return None
        else:
            out.append(ord(component_[i]))
            i += 1
    try:
        return out.decode("utf-8")
    except UnicodeDecodeError:
        return None


def prefix(factory_id: str) -> str:
    """The prefix a Kafka ACL grants one factory (its topics and its consumer groups)."""
    return f"{TOPIC_PREFIX}{component(factory_id)}."


def restock_topic(factory_id: str) -> str:
    """The factory's restock-alert topic: ``factory.<component>.restock-alerts``."""
    return f"{prefix(factory_id)}{RESTOCK_SUFFIX.lstrip('.')}"


def consumer_group(factory_id: str, name: str = "tail") -> str:
    """A consumer group inside the factory's ACL prefix."""
    return f"{prefix(factory_id)}{name}"


def restock_topic_component(topic: str) -> str | None:
    """The component of a per-factory restock topic name, None for any other topic."""
    m = _RESTOCK.fullmatch(topic)
    return None if m is None else m[1]


def clickhouse_user(factory_id: str) -> str:
    """The factory's read-only ClickHouse user (``c2m_factory_<component>``)."""
    return f"c2m_factory_{component(factory_id)}"
