"""Where a flush goes: the sink contract, the direct ClickHouse sink and the sink wire format.

A sink takes one flush batch (state rows, visitor rows, dedup ids, late events and the
checkpoints, last) and returns only once the batch is durable *for restore*: a later
``load_partition`` of any source partition in the batch sees its checkpoint. The pipeline
commits Kafka offsets only after ``write`` returned, so a commit never runs ahead of the
sink. Two sinks:

- ``ClickHouseSink``: today's direct write through ``DemandStore`` on the pipeline's I/O
  thread (embedded chDB in one process, or an HTTP ClickHouse server that several workers
  may write to).
- ``streams.kafka.sink.KafkaSink``: produces the batch to the ``c2m.sink`` topic and awaits
  the acks; the single ``c2m writer`` process (``streams.writer``) owns ClickHouse, writes
  many flushes in few large inserts, and serves restores over loopback HTTP.

The wire format (``encode_flush`` / ``decode_flush``) is plain JSON, pure and unit-tested.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Protocol, TypeVar

import orjson

from streams.clickhouse.store import DemandStore, PartitionSnapshot
from streams.core.config import EngineConfig
from streams.core.demand import CellKey
from streams.core.engine import Checkpoint, FlushBatch, LateEvent, Record
from streams.core.inventory import SkuKey
from streams.kafka.topics import TOPIC_SINK

T = TypeVar("T")
#: What a restore needs: the checkpoint, cells and SKU hours that can still change, dedup
#: ids in horizon.
Loaded = PartitionSnapshot
#: Runs a blocking function on the pipeline's single ClickHouse thread.
IoRunner = Callable[..., Awaitable[Any]]

#: The topic between workers and the writer (one partition: a total order of flushes).
SINK_TOPIC = TOPIC_SINK
#: 2: visitor and dedup rows carry arrays of hashes (1: one hash a row, still read)
WIRE_VERSION = 2


class Sink(Protocol):
    """Durable destination of flush batches and source of partition restores."""

    name: str
    #: ``write`` leaves the serving rows and checkpoints to ``publish``, which may come
    #: after several writes (False: ``write`` does everything, ``publish`` nothing)
    defers_publish: bool

    async def start(self) -> None: ...

    async def write(
        self, batch: FlushBatch, late: Sequence[LateEvent], lateness_ms: int
    ) -> None:
        """Make ``batch`` durable; raise ``SinkError`` to have the flush retried."""

    async def publish(self) -> None:
        """Make the checkpoints of every batch written so far durable (after their serving
        rows); raise ``SinkError`` to have it retried with the next flush."""

    async def load_partition(
        self, topic: str, partition: int, committed: int | None, cfg: EngineConfig
    ) -> Loaded | None:
        """Latest checkpointed state of a source partition, or None without a checkpoint.

        ``committed`` is the consumer group's committed offset: a sink that writes
        asynchronously must not answer with a checkpoint older than that."""

    async def close(self) -> None: ...


class ClickHouseSink:
    """Direct write: the flush goes to ClickHouse from this process."""

    name = "clickhouse"
    defers_publish = True

    def __init__(self, store: DemandStore, io: IoRunner) -> None:
        self.store = store
        self.io = io

    async def start(self) -> None:
        return None

    async def write(
        self, batch: FlushBatch, late: Sequence[LateEvent], lateness_ms: int
    ) -> None:
        await self.io(partial(self.store.write, publish=False), batch, late, lateness_ms)

    async def publish(self) -> None:
        await self.io(self.store.publish)

    async def load_partition(
        self, topic: str, partition: int, committed: int | None, cfg: EngineConfig
    ) -> Loaded | None:
        # Synchronous writes from the same group: ClickHouse already holds every
        # checkpoint whose offset was committed.
        loaded: Loaded | None = await self.io(
            self.store.load_partition, topic, partition, 2**62, cfg
        )
        return loaded

    async def close(self) -> None:
        return None


# ---------------------------------------------------------------- wire format
@dataclass(slots=True)
class SinkMessage:
    """One message on ``c2m.sink``: a chunk of one flush. Checkpoints ride in the last one."""

    rows: list[list[Any]] = field(default_factory=list)
    visitors: list[list[Any]] = field(default_factory=list)
    shops: list[list[Any]] = field(default_factory=list)
    dedup: list[list[Any]] = field(default_factory=list)
    late: list[list[Any]] = field(default_factory=list)
    skus: list[list[Any]] = field(default_factory=list)
    products: list[list[Any]] = field(default_factory=list)
    checkpoints: list[list[Any]] = field(default_factory=list)
    lateness_ms: int = 0

    #: rows, counting a visitor or dedup row as its number of hashes
    weight: int = 0


def _late_row(e: LateEvent) -> list[Any]:
    r = e.record
    payload = (r.value or b"").decode("utf-8", "replace")
    return [r.topic, r.partition, r.offset, e.event_id, e.event_type, e.ts_ms,
            e.watermark_ms, payload]


def _checkpoint_row(c: Checkpoint) -> list[Any]:
    return [c.topic, c.partition, c.position, c.max_ts, c.consumed, c.processed,
            c.dead_lettered, c.duplicates, c.late, c.last_ts, c.last_fp]


def encode_flush(
    batch: FlushBatch, late: Sequence[LateEvent], lateness_ms: int, max_rows: int = 5_000
) -> list[bytes]:
    """Split one flush into messages of at most ``max_rows`` rows; the checkpoints are
    in the last message, so a reader that stops part-way never sees a checkpoint whose
    rows it has not seen, and the visitor rows come before the state rows, so a reader
    that refreshes the cells of the state rows it has read has read their visitors."""
    msgs = [SinkMessage(lateness_ms=lateness_ms)]

    def add(attr: str, rows: Iterator[list[Any]], hashes_at: int | None = None) -> None:
        for row in rows:
            if msgs[-1].weight >= max_rows:
                msgs.append(SinkMessage(lateness_ms=lateness_ms))
            getattr(msgs[-1], attr).append(row)
            msgs[-1].weight += 1 if hashes_at is None else max(len(row[hashes_at]), 1)

    # visitors and shops before the state rows: the writer may write a flush's messages in
    # two writes, and refreshes the cells of the state rows it writes; every visitor and
    # shop row of the flush is then written by the time the last of its cells is refreshed
    add("visitors", (list(r) for r in batch.visitor_rows), hashes_at=7)
    add("shops", (list(r) for r in batch.shop_rows), hashes_at=7)
    add("rows", (list(r) for r in batch.rows))
    add("dedup", (list(r) for r in batch.dedup_rows), hashes_at=3)
    add("late", (_late_row(e) for e in late))
    add("skus", (list(r) for r in batch.sku_rows))
    add("products", (list(r) for r in batch.product_rows))
    msgs[-1].checkpoints = [_checkpoint_row(c) for c in batch.checkpoints]
    return [
        orjson.dumps({
            "v": WIRE_VERSION, "rows": m.rows, "visitors": m.visitors, "shops": m.shops,
            "dedup": m.dedup,
            "late": m.late, "skus": m.skus, "products": m.products,
            "checkpoints": m.checkpoints, "lateness_ms": m.lateness_ms,
        })
        for m in msgs
    ]


def decode_flush(value: bytes) -> tuple[FlushBatch, list[LateEvent], int]:
    """The inverse of one ``encode_flush`` message."""
    doc = orjson.loads(value)
    version = doc.get("v")
    if version not in (1, WIRE_VERSION):
        raise ValueError(f"unsupported sink message version {version!r}")
    if version == 1:  # one hash per visitor and dedup row
        dedup = [(str(t), int(p), int(h), [int(i)], int(v)) for t, p, h, i, v in doc["dedup"]]
        visitors = [(*r[:7], [r[7]]) for r in doc["visitors"]]
    else:
        dedup = [(str(t), int(p), int(h), [int(i) for i in ids], int(v))
                 for t, p, h, ids, v in doc["dedup"]]
        visitors = [tuple(r) for r in doc["visitors"]]
    batch = FlushBatch(
        rows=[tuple(r) for r in doc["rows"]],
        checkpoints=[Checkpoint(*c) for c in doc["checkpoints"]],
        dedup_rows=dedup,
        visitor_rows=visitors,
        sku_rows=[tuple(r) for r in doc.get("skus", ())],
        # products of a worker from before shop_id (11 columns): no listing shop
        product_rows=[(*r, "") if len(r) == 11 else tuple(r) for r in doc.get("products", ())],
        shop_rows=[tuple(r) for r in doc.get("shops", ())],
    )
    late = [
        LateEvent(Record(t, p, o, None, None, payload.encode()), eid, etype, ts, wm)
        for t, p, o, eid, etype, ts, wm, payload in doc["late"]
    ]
    return batch, late, int(doc["lateness_ms"])


def merge_flushes(
    parts: Sequence[tuple[FlushBatch, list[LateEvent], int]],
) -> list[tuple[FlushBatch, list[LateEvent], int]]:
    """Many decoded messages -> one batch per lateness setting (normally exactly one), so
    the writer issues one insert per table however many flushes it consumed."""
    merged: dict[int, tuple[FlushBatch, list[LateEvent]]] = {}
    for batch, late, lateness in parts:
        into = merged.setdefault(lateness, (FlushBatch([], []), []))
        into[0].rows.extend(batch.rows)
        into[0].visitor_rows.extend(batch.visitor_rows)
        into[0].shop_rows.extend(batch.shop_rows)
        into[0].dedup_rows.extend(batch.dedup_rows)
        into[0].sku_rows.extend(batch.sku_rows)
        into[0].product_rows.extend(batch.product_rows)
        into[0].checkpoints.extend(batch.checkpoints)
        into[1].extend(late)
    return [(b, lt, lateness) for lateness, (b, lt) in merged.items()]


# ---------------------------------------------------------------- restore wire format
def encode_loaded(loaded: Loaded | None) -> dict[str, Any]:
    if loaded is None:
        return {"checkpoint": None}
    return {
        "checkpoint": _checkpoint_row(loaded.checkpoint),
        "cells": [[list(k), v] for k, v in loaded.cells],
        "ids": [list(i) for i in loaded.dedup_ids],
        "skus": [[list(k), v] for k, v in loaded.sku_hours],
    }


def decode_loaded(doc: dict[str, Any]) -> Loaded | None:
    if doc.get("checkpoint") is None:
        return None
    cp = Checkpoint(*doc["checkpoint"])
    cells: list[tuple[CellKey, list[int]]] = [(tuple(k), list(v)) for k, v in doc["cells"]]
    ids = [(int(h), int(i)) for h, i in doc["ids"]]
    skus: list[tuple[SkuKey, list[int]]] = [
        ((str(k[0]), int(k[1])), [int(x) for x in v]) for k, v in doc.get("skus", ())
    ]
    return PartitionSnapshot(cp, cells, ids, skus)
