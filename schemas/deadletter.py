"""The ``c2m.dead-letter`` envelope: one per rejected input message.

The Kafka key of a dead letter is the source message's key. The envelope keeps the raw
value (as text when it is valid UTF-8, else base64) up to a size limit; larger values
are truncated and marked, and remain readable at their source coordinates.
"""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime

import orjson
from pydantic import BaseModel, ConfigDict, Field

from schemas.contract import CONTRACT_VERSION


class SourceCoordinates(BaseModel):
    model_config = ConfigDict(frozen=True)

    topic: str
    partition: int
    offset: int
    timestamp_ms: int | None = Field(default=None, description="Kafka record timestamp")


class DeadLetter(BaseModel):
    model_config = ConfigDict(frozen=True)

    contract_version: int = CONTRACT_VERSION
    reason: str = Field(description="Stable reason code, see schemas.contract")
    detail: str = Field(description="Which fields failed and why; never the values")
    source: SourceCoordinates
    value_bytes: int = Field(description="Size of the original value")
    value_sha256: str
    value_utf8: str | None = Field(default=None, description="Original value, if UTF-8")
    value_base64: str | None = Field(default=None, description="Original value, if not UTF-8")
    value_truncated: bool = False
    dead_lettered_at: datetime


def build_dead_letter(
    *,
    reason: str,
    detail: str,
    topic: str,
    partition: int,
    offset: int,
    timestamp_ms: int | None,
    value: bytes | None,
    keep_bytes: int = 262_144,
) -> bytes:
    """Serialise a dead-letter envelope for one rejected message."""
    raw = value or b""
    kept = raw[:keep_bytes]
    text: str | None
    try:
        text = kept.decode("utf-8")
        b64 = None
    except UnicodeDecodeError:
        text = None
        b64 = base64.b64encode(kept).decode("ascii")
    envelope = DeadLetter(
        reason=reason,
        detail=detail[:2000],
        source=SourceCoordinates(
            topic=topic, partition=partition, offset=offset, timestamp_ms=timestamp_ms
        ),
        value_bytes=len(raw),
        value_sha256=hashlib.sha256(raw).hexdigest(),
        value_utf8=text,
        value_base64=b64,
        value_truncated=len(raw) > keep_bytes,
        dead_lettered_at=datetime.now(UTC),
    )
    return orjson.dumps(envelope.model_dump(mode="json"))
