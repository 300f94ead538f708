"""The demand engine: raw Kafka records in, demand counters, dead letters and late events out.

Framework-free: the Faust worker, the tests and the benchmarks feed it lists of
``Record``. Per record the steps are

1. decode against the topic contract (``schemas.contract.decode``) -> dead letter on failure;
2. reject event times too far ahead of the record's Kafka timestamp (``future_ts``) or
   absurdly far behind it (``stale_ts``, e.g. a zero timestamp from 1970);
3. drop a repeated ``event_id`` (dedup horizon, per source partition);
4. events behind the watermark by more than the correction horizon -> late events;
5. apply to every window size; events behind the watermark but within the horizon are
   applied too (a correction: the window's row is re-flushed with a higher version).

Nothing here reads the wall clock except step 2 when a record has no Kafka timestamp.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from schemas.contract import (
    TOPIC_LOGISTICS,
    TOPIC_ORDERS,
    TOPIC_PAGEVIEWS,
    TOPIC_PRODUCTS,
    ContractViolation,
    decode,
)
from schemas.events import (
    LogisticsMovement,
    OrderEvent,
    PageViewEvent,
    ProductUpsert,
    StockLevel,
)
from streams.core.catalog import UNKNOWN, UNKNOWN_PRODUCT, Catalog, ProductAttrs
from streams.core.dedup import Deduplicator, id_hash
from streams.core.demand import (
    CANCELLED_UNITS,
    GMV_E4,
    ORDERS,
    PAGEVIEWS,
    RETURNED_UNITS,
    UNITS,
    CellKey,
    PartitionState,
    price_e4,
)
from streams.core.inventory import (
    SKU_CANCELLED,
    SKU_ORDERS,
    SKU_PAGEVIEWS,
    SKU_RECEIVED,
    SKU_RETURNED,
    SKU_SHIPPED,
    SKU_UNITS,
    SkuKey,
)
from streams.core.windows import DEFAULT_WINDOW_SECONDS, Watermark, window_start_s

DEMAND_TOPICS = (TOPIC_ORDERS, TOPIC_PAGEVIEWS, TOPIC_LOGISTICS)


@dataclass(frozen=True, slots=True)
class EngineConfig:
    window_seconds: tuple[int, ...] = DEFAULT_WINDOW_SECONDS
    allowed_lateness_ms: int = 10 * 60_000
    correction_horizon_ms: int = 48 * 3_600_000
    dedup_horizon_ms: int = 48 * 3_600_000
    max_future_ms: int = 5 * 60_000
    max_past_ms: int = 365 * 86_400_000  # older than this before the record time: stale_ts
    max_message_bytes: int = 1_048_576
    live_retention_ms: int = 7 * 86_400_000  # hourly and daily windows kept for rolling sums

    def keep_from_s(self, window_seconds: int, watermark_ms: int) -> int:
        """Windows ending at or before this (epoch s) can be dropped from memory."""
        keep = self.correction_horizon_ms
        if window_seconds >= 3600:
            keep = max(keep, self.live_retention_ms)
        return (watermark_ms - keep) // 1000


@dataclass(frozen=True, slots=True)
class Record:
    """One Kafka record, as the engine sees it."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int | None
    key: bytes | None
    value: bytes | None


@dataclass(frozen=True, slots=True)
class Rejected:
    """A record that goes to the dead-letter topic."""

    record: Record
    reason: str
    detail: str


@dataclass(frozen=True, slots=True)
class LateEvent:
    """A valid event behind the watermark by more than the correction horizon."""

    record: Record
    event_id: str
    event_type: str
    ts_ms: int
    watermark_ms: int


@dataclass(slots=True)
class BatchOutcome:
    rejected: list[Rejected] = field(default_factory=list)
    late: list[LateEvent] = field(default_factory=list)


#: One row of ``c2m.demand_state`` (see deploy/clickhouse): source, cell, measures, version.
StateRow = tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """How far one source partition is reflected in a flush."""

    topic: str
    partition: int
    position: int  # next offset to process; also the version of the rows of this flush
    max_ts: int | None
    consumed: int
    processed: int
    dead_lettered: int
    duplicates: int
    late: int


#: One row of ``c2m.dedup_ids``: (topic, partition, hour bucket, id hash, version).
DedupRow = tuple[str, int, int, int, int]
#: One row of ``c2m.visitor_cells``: (*CellKey, visitor hash).
VisitorRow = tuple[Any, ...]
#: One row of ``c2m.sku_state``: (topic, partition, sku, hour_s, *SKU_MEASURES, version).
SkuRow = tuple[Any, ...]
#: One row of ``c2m.products``: (sku, ts, factory_id, category, color, size, price_band,
#: list_price, lead_time_days, moq).
ProductRow = tuple[Any, ...]


@dataclass(slots=True)
class FlushBatch:
    rows: list[StateRow]
    checkpoints: list[Checkpoint]
    dedup_rows: list[DedupRow] = field(default_factory=list)
    visitor_rows: list[VisitorRow] = field(default_factory=list)
    sku_rows: list[SkuRow] = field(default_factory=list)
    product_rows: list[ProductRow] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(
            self.rows or self.checkpoints or self.dedup_rows or self.visitor_rows
            or self.sku_rows or self.product_rows
        )


class DemandEngine:
    """Demand counters for all source partitions this process owns."""

    def __init__(self, config: EngineConfig | None = None, catalog: Catalog | None = None) -> None:
        self.config = config or EngineConfig()
        self.catalog = catalog if catalog is not None else Catalog()
        self.states: dict[tuple[str, int], PartitionState] = {}
        #: catalog versions not yet written to ClickHouse (``c2m.products``)
        self.pending_products: list[ProductRow] = []

    # ---------------------------------------------------------------- state
    def state(self, topic: str, partition: int) -> PartitionState:
        st = self.states.get((topic, partition))
        if st is None:
            st = PartitionState(
                topic=topic,
                partition=partition,
                watermark=Watermark(self.config.allowed_lateness_ms),
                dedup=Deduplicator(self.config.dedup_horizon_ms),
            )
            self.states[(topic, partition)] = st
        return st

    def drop(self, topic: str, partition: int) -> None:
        """Forget a partition (revoked, or about to be restored from the store)."""
        self.states.pop((topic, partition), None)

    def restore(
        self,
        checkpoint: Checkpoint,
        rows: Iterable[tuple[CellKey, list[int]]],
        dedup_ids: Iterable[tuple[int, int]] = (),
        sku_rows: Iterable[tuple[SkuKey, list[int]]] = (),
    ) -> PartitionState:
        """Rebuild a partition from its last flushed checkpoint, cell rows and dedup ids."""
        self.drop(checkpoint.topic, checkpoint.partition)
        st = self.state(checkpoint.topic, checkpoint.partition)
        st.watermark.max_ts = checkpoint.max_ts
        st.position = st.flushed_position = checkpoint.position
        st.ledger.consumed = checkpoint.consumed
        st.ledger.processed = checkpoint.processed
        st.ledger.dead_lettered = checkpoint.dead_lettered
        st.ledger.duplicates = checkpoint.duplicates
        st.ledger.late = checkpoint.late
        for key, vec in rows:
            st.cells[key] = list(vec)
        for skey, svec in sku_rows:
            st.skus.buckets[skey] = list(svec)
        st.dedup.load(dedup_ids)
        return st

    # ---------------------------------------------------------------- catalog
    def apply_product(self, record: Record) -> Rejected | None:
        """Apply one ``shop.products`` record to the catalog."""
        try:
            ev: ProductUpsert = decode(TOPIC_PRODUCTS, record.value, self.config.max_message_bytes)
        except ContractViolation as exc:
            return Rejected(record, exc.reason, exc.detail)
        self.catalog.upsert(
            sku=ev.sku,
            ts=ev.ts,
            category=ev.category,
            color=ev.color,
            size=ev.size,
            list_price=ev.list_price,
            factory_id=ev.factory_id,
            lead_time_days=ev.lead_time_days,
            moq=ev.moq,
        )
        attrs = self.catalog.lookup(ev.sku, ev.ts)
        assert attrs is not None  # noqa: S101 - just upserted
        self.pending_products.append(
            (ev.sku, ev.ts, ev.factory_id, ev.category, ev.color, ev.size, attrs.price_band,
             ev.list_price, ev.lead_time_days, ev.moq)
        )
        return None

    # ---------------------------------------------------------------- demand
    def process(self, records: Sequence[Record], out: BatchOutcome | None = None) -> BatchOutcome:
        """Apply demand records (any mix of partitions, each in offset order)."""
        out = out if out is not None else BatchOutcome()
        cfg = self.config
        wall_ms: int | None = None
        st: PartitionState | None = None
        for rec in records:
            if st is None or st.topic != rec.topic or st.partition != rec.partition:
                st = self.state(rec.topic, rec.partition)
            st.position = rec.offset + 1
            ledger = st.ledger
            ledger.consumed += 1
            try:
                ev = decode(rec.topic, rec.value, cfg.max_message_bytes)
            except ContractViolation as exc:
                ledger.dead_lettered += 1
                out.rejected.append(Rejected(rec, exc.reason, exc.detail))
                continue
            ts: int = ev.ts
            ref = rec.timestamp_ms
            if ref is None or ref < 0:
                if wall_ms is None:
                    wall_ms = int(time.time() * 1000)
                ref = wall_ms
            if ts > ref + cfg.max_future_ms:
                ledger.dead_lettered += 1
                out.rejected.append(
                    Rejected(
                        rec,
                        "future_ts",
                        f"ts is {(ts - ref) // 1000} s ahead of the record time "
                        f"(limit {cfg.max_future_ms // 1000} s)",
                    )
                )
                continue
            if ts < ref - cfg.max_past_ms:
                ledger.dead_lettered += 1
                out.rejected.append(
                    Rejected(
                        rec,
                        "stale_ts",
                        f"ts is {(ref - ts) // 86_400_000} days before the record time "
                        f"(limit {cfg.max_past_ms // 86_400_000} days)",
                    )
                )
                continue
            if not st.dedup.first_time(ev.event_id, ts):
                ledger.duplicates += 1
                continue
            behind = st.watermark.lateness(ts)
            if behind > cfg.correction_horizon_ms:
                ledger.late += 1
                wm = st.watermark.value
                out.late.append(LateEvent(rec, ev.event_id, ev.event_type, ts, wm or 0))
                continue
            if behind > 0:
                ledger.corrected += 1
            self._apply(st, ev)
            ledger.processed += 1
            st.watermark.observe(ts)
        return out

    def _attrs(self, st: PartitionState, sku: str, ts: int) -> ProductAttrs:
        attrs = self.catalog.lookup(sku, ts)
        if attrs is None:
            st.ledger.unknown_sku_lines += 1
            return UNKNOWN_PRODUCT
        return attrs

    def _apply(self, st: PartitionState, ev: Any) -> None:
        sizes = self.config.window_seconds
        ts = ev.ts
        if isinstance(ev, OrderEvent):
            region = ev.region
            skus = st.skus
            if ev.event_type == "order_placed":
                touched: set[CellKey] = set()
                sku_seen: set[str] = set()
                for line in ev.lines:
                    sb = skus.bucket(line.sku, ts)
                    sb[SKU_UNITS] += line.qty
                    if line.sku not in sku_seen:
                        sku_seen.add(line.sku)
                        sb[SKU_ORDERS] += 1
                    a = self._attrs(st, line.sku, ts)
                    gmv = line.qty * price_e4(line.unit_price)
                    for size_s in sizes:
                        key = (size_s, window_start_s(ts, size_s),
                               a.category, a.color, a.size, a.price_band, region)
                        vec = st.cell(key)
                        vec[UNITS] += line.qty
                        vec[GMV_E4] += gmv
                        touched.add(key)
                for key in touched:
                    st.cells[key][ORDERS] += 1
            else:
                for line in ev.lines:
                    skus.bucket(line.sku, ts)[SKU_CANCELLED] += line.qty
                    a = self._attrs(st, line.sku, ts)
                    for size_s in sizes:
                        key = (size_s, window_start_s(ts, size_s),
                               a.category, a.color, a.size, a.price_band, region)
                        st.cell(key)[CANCELLED_UNITS] += line.qty
        elif isinstance(ev, PageViewEvent):
            a = self._attrs(st, ev.sku, ts)
            visitor = id_hash(ev.visitor_id)
            st.skus.bucket(ev.sku, ts)[SKU_PAGEVIEWS] += 1
            for size_s in sizes:
                key = (size_s, window_start_s(ts, size_s),
                       a.category, a.color, a.size, a.price_band, ev.region)
                st.cell(key)[PAGEVIEWS] += 1
                st.new_visitors.add((key, visitor))
        elif isinstance(ev, LogisticsMovement) and ev.event_type == "returned":
            st.skus.bucket(ev.sku, ts)[SKU_RETURNED] += ev.qty
            a = self._attrs(st, ev.sku, ts)
            region = ev.region or UNKNOWN
            for size_s in sizes:
                key = (size_s, window_start_s(ts, size_s),
                       a.category, a.color, a.size, a.price_band, region)
                st.cell(key)[RETURNED_UNITS] += ev.qty
        elif isinstance(ev, LogisticsMovement) and ev.event_type == "restock_shipped":
            st.skus.bucket(ev.sku, ts)[SKU_SHIPPED] += ev.qty
        elif isinstance(ev, LogisticsMovement) and ev.event_type == "restock_received":
            st.skus.bucket(ev.sku, ts)[SKU_RECEIVED] += ev.qty
        elif isinstance(ev, StockLevel):
            st.skus.stock_count(ev.sku, ts, ev.on_hand)
        # shipped / delivered movements carry no demand or stock change of their own:
        # validated and counted as processed.

    # ---------------------------------------------------------------- flushing
    def flush_batch(self) -> FlushBatch:
        """Rows and checkpoints for everything changed since the last flush.

        Nothing is marked flushed here: call ``flushed(batch)`` once the sink has
        durably written the batch, so a failed write is simply retried.
        """
        rows: list[StateRow] = []
        checkpoints: list[Checkpoint] = []
        dedup_rows: list[DedupRow] = []
        visitor_rows: list[VisitorRow] = []
        sku_rows: list[SkuRow] = []
        for st in self.states.values():
            if not st.needs_flush() or st.position is None:
                continue
            version = st.position
            for key, vec in st.dirty_rows():
                rows.append((st.topic, st.partition, *key, *vec, version))
            dedup_rows.extend(
                (st.topic, st.partition, bucket, h, version) for bucket, h in st.dedup.pending
            )
            visitor_rows.extend((*key, visitor) for key, visitor in st.new_visitors)
            sku_rows.extend(
                (st.topic, st.partition, sku, hour, *vec, version)
                for (sku, hour), vec in st.skus.dirty_rows()
            )
            lg = st.ledger
            checkpoints.append(
                Checkpoint(
                    st.topic, st.partition, version, st.watermark.max_ts,
                    lg.consumed, lg.processed, lg.dead_lettered, lg.duplicates, lg.late,
                )
            )
        return FlushBatch(
            rows, checkpoints, dedup_rows, visitor_rows, sku_rows, list(self.pending_products)
        )

    def flushed(self, batch: FlushBatch) -> None:
        """The sink wrote ``batch``: mark it clean and drop what can no longer change."""
        if batch.product_rows:
            del self.pending_products[: len(batch.product_rows)]
        persisted: dict[tuple[str, int], int] = {}
        for topic, partition, *_ in batch.dedup_rows:
            persisted[(topic, partition)] = persisted.get((topic, partition), 0) + 1
        for cp in batch.checkpoints:
            st = self.states.get((cp.topic, cp.partition))
            if st is None:
                continue
            st.dedup.persisted(persisted.get((cp.topic, cp.partition), 0))
            if st.position != cp.position:
                # processed more since the batch was cut: keep dirty marks for the new work
                continue
            st.mark_flushed()
            wm = st.watermark.value
            if wm is not None:
                st.dedup.expire(wm)
            st.evict(self.config.correction_horizon_ms, self.config.live_retention_ms)
