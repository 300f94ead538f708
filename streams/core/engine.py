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

Steps 1-5 run compiled for the common, well-formed cases (``streams/core/_lanes.c``, one
lane per demand topic, on this engine's own state; see ``_compiled_run``); the Python code
here handles every other record and is the reference the lanes are tested against.
"""

from __future__ import annotations

import contextlib
import time
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from itertools import groupby
from operator import attrgetter
from typing import Any, Protocol, cast

from schemas.contract import (
    TOPIC_LOGISTICS,
    TOPIC_ORDERS,
    TOPIC_PAGEVIEWS,
    TOPIC_PRODUCTS,
    ContractViolation,
    decode,
)
from schemas.events import ProductUpsert
from schemas.fastpath import fast_decode, fast_decode_many
from streams.core import _lanes
from streams.core.calendar import MarketCalendar
from streams.core.catalog import UNKNOWN, UNKNOWN_PRODUCT, Catalog, ProductAttrs
from streams.core.config import EngineConfig
from streams.core.dedup import BUCKET_MS, Deduplicator, id_hash
from streams.core.demand import (
    ARRAY_CHUNK,
    CANCELLED_UNITS,
    GMV_E4,
    ORDERS,
    PAGEVIEWS,
    RETURNED_UNITS,
    UNITS,
    CellHashes,
    CellKey,
    Cells,
    Detached,
    HotEntry,
    PageViewEntry,
    PartitionState,
    price_e4,
    visitor_rows_of,
)
from streams.core.inventory import (
    SKU_CANCELLED,
    SKU_ORDERS,
    SKU_PAGEVIEWS,
    SKU_RECEIVED,
    SKU_RETURNED,
    SKU_SHIPPED,
    SKU_UNITS,
    SkuHours,
    SkuKey,
)
from streams.core.kanon import ORDER, RETURN, VIEW, shop_tag
from streams.core.windows import Watermark

DEMAND_TOPICS = (TOPIC_ORDERS, TOPIC_PAGEVIEWS, TOPIC_LOGISTICS)

_Lane = Callable[[_lanes.LaneState, Sequence[Any], int, int | None], _lanes.RunResult]
#: the compiled core's lane (a method of ``_lanes.Core``) of each demand topic
_LANE_NAMES = {
    TOPIC_PAGEVIEWS: "pageview_run",
    TOPIC_LOGISTICS: "logistics_run",
    TOPIC_ORDERS: "order_run",
}


def visitor_base_sizes(window_seconds: Iterable[int]) -> list[int]:
    """The window sizes whose visitor rows the engine writes: those that are not a multiple
    of a smaller size. ClickHouse expands each row to the sizes that are multiples of its
    own (``c2m.visitor_feed_expand``), so (300, 3600, 86400) writes only 5-minute rows."""
    sizes = sorted(set(window_seconds))
    return [s for s in sizes if not any(s % b == 0 for b in sizes if b < s)]


_topic_partition = attrgetter("topic", "partition")


class KafkaRecord(Protocol):
    """What the engine reads of a consumed record: a ``Record``, or aiokafka's
    ``ConsumerRecord`` as fetched (the consumer hands those over without copying)."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def timestamp(self) -> int | None:
        """Kafka record timestamp, epoch ms."""
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...


#: (topic, partition, records of that partition in offset order)
Run = tuple[str, int, Sequence[KafkaRecord]]


def runs_of(records: Iterable[KafkaRecord]) -> list[Run]:
    """``records`` (each partition's in offset order) cut into runs of one partition."""
    return [(t, p, list(g)) for (t, p), g in groupby(records, _topic_partition)]


@dataclass(slots=True, eq=False)
class Record:
    """One Kafka record built by hand (tests, the catalog reader, decoded late events)."""

    topic: str
    partition: int
    offset: int
    timestamp: int | None  # epoch ms
    key: bytes | None
    value: bytes | None


@dataclass(frozen=True, slots=True)
class Rejected:
    """A record that goes to the dead-letter topic."""

    record: KafkaRecord
    reason: str
    detail: str


@dataclass(frozen=True, slots=True)
class LateEvent:
    """A valid event behind the watermark by more than the correction horizon."""

    record: KafkaRecord
    event_id: str
    event_type: str
    ts_ms: int
    watermark_ms: int


#: What ``BatchOutcome.counts`` counts per topic, in this order (the ledger's fields).
OUTCOME_FIELDS = (
    "consumed", "processed", "dead_lettered", "duplicates", "late", "unknown_sku_lines",
)


@dataclass(slots=True)
class BatchOutcome:
    rejected: list[Rejected] = field(default_factory=list)
    late: list[LateEvent] = field(default_factory=list)
    #: topic -> what the batch added to its partitions' ledgers (``OUTCOME_FIELDS``)
    counts: dict[str, list[int]] = field(default_factory=dict)


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
    #: the record at position - 1 (the last one consumed): its Kafka timestamp and
    #: ``record_fingerprint``, so a restore can tell whether the log it reads is the one
    #: this checkpoint came from (-1 and 0: unknown, a checkpoint of an older version)
    last_ts: int = -1
    last_fp: int = 0


def record_fingerprint(record: KafkaRecord) -> int:
    """64 bits that identify a record's content: CRC-32 of its key and of its value."""
    return (zlib.crc32(record.key or b"") << 32) | zlib.crc32(record.value or b"")


#: One row of ``c2m.dedup_feed``: (topic, partition, hour bucket, [id hashes], version).
DedupRow = tuple[str, int, int, list[int], int]
#: One row of ``c2m.visitor_feed`` (a base window size): (*CellKey, [visitor hashes],
#: windows); a row of ``c2m.shop_feed`` has the same form with shop tags.
VisitorRow = tuple[Any, ...]
#: One row of ``c2m.sku_state``: (topic, partition, sku, hour_s, *SKU_MEASURES, version).
SkuRow = tuple[Any, ...]
#: One row of ``c2m.products``: (sku, ts, factory_id, category, color, size, price_band,
#: list_price, lead_time_days, moq, deleted, shop_id).
ProductRow = tuple[Any, ...]


@dataclass(slots=True)
class FlushBatch:
    rows: list[StateRow]
    checkpoints: list[Checkpoint]
    dedup_rows: list[DedupRow] = field(default_factory=list)
    visitor_rows: list[VisitorRow] = field(default_factory=list)
    sku_rows: list[SkuRow] = field(default_factory=list)
    product_rows: list[ProductRow] = field(default_factory=list)
    #: the partitions' marks taken by the cut (not written anywhere; see ``flush_batch``)
    cuts: list[Detached] = field(default_factory=list)
    #: contributor tags per base cell (``c2m.shop_feed``; streams.core.kanon)
    shop_rows: list[VisitorRow] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(
            self.rows or self.checkpoints or self.dedup_rows or self.visitor_rows
            or self.sku_rows or self.product_rows or self.shop_rows
        )


class DemandEngine:
    """Demand counters for all source partitions this process owns."""

    def __init__(self, config: EngineConfig | None = None, catalog: Catalog | None = None) -> None:
        self.config = config or EngineConfig()
        self.catalog = catalog if catalog is not None else Catalog(compiled=self.config.native)
        self.states: dict[tuple[str, int], PartitionState] = {}
        #: window boundaries in the market's time zone
        self.calendar = MarketCalendar(self.config.timezone, self.config.window_seconds)
        # every window boundary is a multiple of this grain, so (dims, ts // grain) fixes
        # the window of every size: the key of the per-partition hot-cell cache
        self._grain_s = self.calendar.grain_s
        self._sizes = self.calendar.sizes
        self._visitor_sizes = frozenset(visitor_base_sizes(self._sizes))
        self._visitor_flags = tuple(s in self._visitor_sizes for s in self._sizes)
        #: the compiled lanes (and cell building) in use: fast paths on, native on, and a
        #: grain that never straddles an hour (the SKU counters are hourly)
        self._native = (
            self.config.fast_paths and self.config.native and 3600 % self._grain_s == 0
            and len(self._sizes) <= 8
        )
        if self._native and not isinstance(self.catalog.store, _lanes.Versions):
            raise ValueError("the engine's compiled lanes read a compiled catalog: "
                             "Catalog(compiled=True), or EngineConfig(native=False)")
        #: the compiled core (streams/core/_lanes.c): the engine's settings and the
        #: lanes' caches, its lanes by topic
        self._core = self._make_core() if self._native else None
        self._lanes: dict[str, _Lane] = (
            {t: getattr(self._core, name) for t, name in _LANE_NAMES.items()}
            if self._core is not None else {}
        )
        self._visitor_hashes: dict[str, int] = {}
        self._shop_hashes: dict[str, int] = {}
        self._expand: dict[tuple[int, int], list[tuple[int, int]]] = {}
        #: catalog versions not yet written to ClickHouse (``c2m.products``)
        self.pending_products: list[ProductRow] = []
        #: products removed by tombstones on the catalog topic
        self.products_deleted = 0

    # ---------------------------------------------------------------- state
    def state(self, topic: str, partition: int) -> PartitionState:
        st = self.states.get((topic, partition))
        if st is None:
            st = PartitionState(
                topic=topic,
                partition=partition,
                watermark=Watermark(self.config.allowed_lateness_ms),
                dedup=_lanes.IdSet(horizon_ms=self.config.dedup_horizon_ms, bucket_ms=BUCKET_MS)
                if self._native else Deduplicator(self.config.dedup_horizon_ms),
                skus=_lanes.SkuHours(hour_of=self.calendar.hour)
                if self._native else SkuHours(hour_of=self.calendar.hour),
                cells=_lanes.Cells(end_of=self.calendar.end_of)
                if self._native else Cells(end_of=self.calendar.end_of),
                visitors=_lanes.CellHashes() if self._native else CellHashes(),
                shops=_lanes.CellHashes() if self._native else CellHashes(),
                calendar=self.calendar,
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
        st.last_record = (checkpoint.last_ts, checkpoint.last_fp)
        st.cells.load(rows)
        st.skus.load(sku_rows)
        st.dedup.load(dedup_ids)
        return st

    # ---------------------------------------------------------------- catalog
    def apply_product(self, record: KafkaRecord) -> Rejected | None:
        """Apply one ``shop.products`` record to the catalog. A null value (tombstone) with
        the SKU as key deletes the product, as compaction of the topic does."""
        if record.value is None:
            sku = (record.key or b"").decode("utf-8", "replace")
            if not sku:
                return Rejected(record, "tombstone", "a tombstone needs the SKU as its key")
            if self.catalog.delete(sku):
                self.products_deleted += 1
            ts = record.timestamp if record.timestamp is not None else int(time.time() * 1000)
            self.pending_products.append(
                (sku, ts, "", "", "", "", "", 0.0, 0, 0, 1, "")
            )
            return None
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
             ev.list_price, ev.lead_time_days, ev.moq, 0, ev.shop_id)
        )
        return None

    # ---------------------------------------------------------------- demand
    def process_runs(self, runs: Iterable[Run], out: BatchOutcome | None = None) -> BatchOutcome:
        """Apply runs of demand records: (topic, partition, its records in offset order),
        as ``getmany`` returns them.

        The hot loop, one run at a time: the run is decoded by ``schemas.fastpath`` (one
        buffer for the whole run when it can) where it is sure and by the contract decoder
        otherwise (all rejections come from there); the partition's state is held in
        locals while the run lasts.
        """
        out = out if out is not None else BatchOutcome()
        cfg = self.config
        max_bytes = cfg.max_message_bytes
        fast = cfg.fast_paths
        native = self._native
        counts = out.counts
        for topic, partition, run in runs:
            st = self.state(topic, partition)
            last = run[-1]
            st.last_record = (
                -1 if last.timestamp is None else last.timestamp, record_fingerprint(last)
            )
            lg = st.ledger
            before = (lg.consumed, lg.processed, lg.dead_lettered, lg.duplicates, lg.late,
                      lg.unknown_sku_lines)
            lane = self._lanes.get(topic) if native else None
            if lane is not None:
                self._compiled_run(lane, topic, st, run, out)
            else:
                if fast:
                    evs = fast_decode_many(topic, [r.value for r in run], max_bytes)
                else:
                    evs = [None] * len(run)
                self._process_run(st, run, evs, out)
            # what this run added to the ledger, for the caller's per-topic counters
            after = (lg.consumed, lg.processed, lg.dead_lettered, lg.duplicates, lg.late,
                     lg.unknown_sku_lines)
            total = counts.get(topic)
            if total is None:
                total = counts[topic] = [0] * len(OUTCOME_FIELDS)
            for i, (a, b) in enumerate(zip(after, before, strict=True)):
                total[i] += a - b
        return out

    def _process_run(
        self, st: PartitionState, run: Sequence[KafkaRecord], evs: list[Any], out: BatchOutcome
    ) -> None:
        """Apply one run of ``st``'s records; ``evs[i]`` is ``run[i]`` fast-decoded or None."""
        cfg = self.config
        max_bytes = cfg.max_message_bytes
        max_future, max_past = cfg.max_future_ms, cfg.max_past_ms
        horizon = cfg.correction_horizon_ms
        lateness_ms = cfg.allowed_lateness_ms
        rejected = out.rejected
        topic = st.topic
        grain_ms = self._grain_s * 1000
        # page-view lane: a grain must never straddle an hour (the SKU counters are hourly)
        pv_lane = cfg.fast_paths and 3600 % self._grain_s == 0 and topic == TOPIC_PAGEVIEWS
        vhashes = self._visitor_hashes
        generation = self.catalog.generation  # the catalog does not change during a batch
        wall_ms: int | None = None
        max_ts = st.watermark.max_ts
        first_time = st.dedup.first_time
        hot_pv = st.hot_pv
        # ledger deltas of the run, written back by _leave()
        dead = dups = late = corrected = processed = 0
        for rec, ev in zip(run, evs, strict=True):
            if ev is None:
                try:
                    ev = decode(topic, rec.value, max_bytes)
                except ContractViolation as exc:
                    dead += 1
                    rejected.append(Rejected(rec, exc.reason, exc.detail))
                    continue
            ts: int = ev.ts
            ref = rec.timestamp
            if ref is None or ref < 0:
                if wall_ms is None:
                    wall_ms = int(time.time() * 1000)
                ref = wall_ms
            if ts > ref + max_future:
                dead += 1
                rejected.append(
                    Rejected(
                        rec,
                        "future_ts",
                        f"ts is {(ts - ref) // 1000} s ahead of the record time "
                        f"(limit {max_future // 1000} s)",
                    )
                )
                continue
            if ts < ref - max_past:
                dead += 1
                rejected.append(
                    Rejected(
                        rec,
                        "stale_ts",
                        f"ts is {(ref - ts) // 86_400_000} days before the record time "
                        f"(limit {max_past // 86_400_000} days)",
                    )
                )
                continue
            if not first_time(ev.event_id, ts):
                dups += 1
                continue
            if max_ts is not None:
                behind = max_ts - lateness_ms - ts
                if behind > horizon:
                    late += 1
                    out.late.append(
                        LateEvent(rec, ev.event_id, ev.event_type, ts, max_ts - lateness_ms)
                    )
                    continue
                if behind > 0:
                    corrected += 1
                if ts > max_ts:
                    max_ts = ts
            else:
                max_ts = ts
            if pv_lane:
                # the page-view lane: one cache lookup instead of catalog, SKU hour and cells
                pk = (ev.sku, ev.region, ts // grain_ms)
                e = hot_pv.get(pk)
                if e is None or e.generation != generation:
                    e = self._pv_entry(st, ev.sku, ev.region, ts)
                if e is not None:
                    if e.unknown_sku:
                        st.ledger.unknown_sku_lines += 1
                    st.skus.add(e.sku_hour, SKU_PAGEVIEWS, 1)
                    cells = st.cells
                    for c in e.cells:
                        cells.add(c, PAGEVIEWS, 1)
                    visitor = vhashes.get(ev.visitor_id)
                    if visitor is None:
                        visitor = self._visitor(ev.visitor_id)
                    vis = st.visitors
                    for vh in e.visitors:
                        vis.add(vh, visitor)
                    viewer = self._shop(ev.shop_id) | VIEW
                    shops = st.shops
                    for sh in e.shops:
                        shops.add(sh, viewer)
                    processed += 1
                    continue
            self._apply(st, ev)
            processed += 1
        self._leave(
            st, run[-1].offset, max_ts, len(run), processed, dead, dups, late, corrected
        )

    def _compiled_run(
        self, lane: _Lane, topic: str, st: PartitionState, run: Sequence[KafkaRecord],
        out: BatchOutcome,
    ) -> None:
        """Apply a run with a compiled lane (``streams/core/_lanes.c``: what
        ``_process_run`` does, in C, on the same state). The lane stops at each record it
        is not sure about, before touching it, and ``_process_run`` handles that record
        alone (decode by the contract, rejections, late events); or, with APPLY, after
        deduplicating it, when the record must be applied in Python (``_apply``): a page
        view whose grain holds a catalog change, a logistics event other than shipped or
        delivered (orders are always applied by their lane)."""
        cfg = self.config
        n = len(run)
        i = 0
        while i < n:
            got = lane(self._lane_state(st), run, i, st.watermark.max_ts)
            stop, max_ts = got.stop, got.max_ts
            st.ledger.unknown_sku_lines += got.unknown_sku
            st.ledger.corrected += got.corrected  # run[stop] included when APPLY
            st.watermark.max_ts = max_ts
            if stop > i:
                self._leave(st, run[stop - 1].offset, max_ts, got.consumed, got.processed, 0,
                            got.duplicates, 0, 0)
            if stop >= n:
                return
            rec = run[stop]
            if got.status == _lanes.APPLY:
                ev = fast_decode(topic, rec.value, cfg.max_message_bytes)
                if ev is None:
                    ev = decode(topic, rec.value, cfg.max_message_bytes)
                self._apply(st, ev)
                self._leave(st, rec.offset, max_ts, 1, 1, 0, 0, 0, 0)
            else:
                self._process_run(st, (rec,), [None], out)
            i = stop + 1

    @staticmethod
    def _leave(
        st: PartitionState, last_offset: int, max_ts: int | None,
        consumed: int, processed: int, dead: int, dups: int, late: int, corrected: int,
    ) -> None:
        """Write a run's position, watermark and ledger deltas back to the partition."""
        st.position = last_offset + 1
        st.watermark.max_ts = max_ts
        lg = st.ledger
        lg.consumed += consumed
        lg.processed += processed
        lg.dead_lettered += dead
        lg.duplicates += dups
        lg.late += late
        lg.corrected += corrected

    def _attrs(self, st: PartitionState, sku: str, ts: int) -> ProductAttrs:
        attrs = self.catalog.lookup(sku, ts)
        if attrs is None:
            st.ledger.unknown_sku_lines += 1
            return UNKNOWN_PRODUCT
        return attrs

    def _entry(self, st: PartitionState, a: ProductAttrs, region: str, ts: int) -> HotEntry:
        """The cells of every window size for (attributes, region) at ``ts``, cached."""
        ts_s = ts // 1000
        hk = (a.category, a.color, a.size, a.price_band, region, ts_s // self._grain_s)
        entry = st.hot.get(hk)
        if entry is None:
            if self._core is not None:  # the same, compiled (streams/core/_lanes.c)
                entry = self._core.hot_entry(self._lane_state(st), hk)
            else:
                entry = st.hot_entry(
                    hk, self.calendar.grain(hk[5]), self._sizes, self._visitor_sizes
                )
        return entry

    def _make_core(self) -> _lanes.Core:
        """The compiled core, with the engine's settings fixed in it: window sizes, the
        calendar's grains, the config's limits."""
        cfg = self.config
        limits = _lanes.Limits(
            grain_s=self._grain_s, lateness_ms=cfg.allowed_lateness_ms,
            horizon_ms=cfg.correction_horizon_ms, max_future_ms=cfg.max_future_ms,
            max_past_ms=cfg.max_past_ms, max_bytes=cfg.max_message_bytes,
        )
        return _lanes.Core(
            sizes=self._sizes, visitor_sizes=self._visitor_flags, grains=self.calendar.grains,
            grain_fn=self.calendar.grain, unknown=UNKNOWN, limits=limits,
        )

    def _lane_state(self, st: PartitionState) -> _lanes.LaneState:
        """What a call of the compiled core works on: the partition's containers, read
        per call (a flush cut replaces some of them), by name and checked for their
        types."""
        catalog = self.catalog
        return _lanes.LaneState(
            dedup=cast("_lanes.IdSet", st.dedup),  # (an IdSet when native: type-checked)
            hot_pv=st.hot_pv, hot=st.hot,
            cells=cast("_lanes.Cells", st.cells),  # (compiled when native: type-checked)
            visitors=cast("_lanes.CellHashes", st.visitors),  # (compiled when native: checked)
            skus=cast("_lanes.SkuHours", st.skus),  # (compiled when native: type-checked)
            catalog=cast("_lanes.Versions", catalog.store),  # (compiled when native: checked)
            generation=catalog.generation, shops=cast("_lanes.CellHashes", st.shops),
        )

    def _pv_entry(
        self, st: PartitionState, sku: str, region: str, ts: int
    ) -> PageViewEntry | None:
        """Build the page-view lane entry for (sku, region, grain of ``ts``), or None when
        the catalog has a version boundary inside the grain (then ``_apply`` does it)."""
        grain_ms = self._grain_s * 1000
        start = ts - ts % grain_ms
        a = self.catalog.lookup_span(sku, start, start + grain_ms - 1)
        if a is False:
            return None
        attrs = UNKNOWN_PRODUCT if a is None else a
        hot = self._entry(st, attrs, region, ts)  # type: ignore[arg-type]
        entry = st.hot_pv[(sku, region, ts // grain_ms)] = PageViewEntry((
            self.catalog.generation, a is None, st.skus.handle(sku, ts), *hot,
        ))
        return entry

    def _shop(self, shop_id: str) -> int:
        """The shop's contributor tag for an order (``| VIEW``, ``| RETURN`` for the other
        families: streams.core.kanon)."""
        h = self._shop_hashes.get(shop_id)
        if h is None:
            if len(self._shop_hashes) >= 100_000:
                self._shop_hashes.clear()
            h = self._shop_hashes[shop_id] = shop_tag(id_hash(shop_id), ORDER)
        return h

    def _visitor(self, visitor_id: str) -> int:
        h = self._visitor_hashes.get(visitor_id)
        if h is None:
            if len(self._visitor_hashes) >= 100_000:
                self._visitor_hashes.clear()
            h = self._visitor_hashes[visitor_id] = id_hash(visitor_id)
        return h

    def _apply(self, st: PartitionState, ev: Any) -> None:
        ts = ev.ts
        kind = ev.event_type
        if kind == "page_view":
            sku = ev.sku
            skus = st.skus
            skus.add(skus.handle(sku, ts), SKU_PAGEVIEWS, 1)
            handles, sets, shop_sets = self._entry(st, self._attrs(st, sku, ts), ev.region, ts)
            cells = st.cells
            for c in handles:
                cells.add(c, PAGEVIEWS, 1)
            visitor = self._visitor(ev.visitor_id)
            vis = st.visitors
            for vh in sets:
                vis.add(vh, visitor)
            viewer = self._shop(ev.shop_id) | VIEW
            shops = st.shops
            for sh in shop_sets:
                shops.add(sh, viewer)
            return
        seller = self._shop(ev.shop_id)
        returner = seller | RETURN
        if kind == "order_placed":
            region = ev.region
            skus = st.skus
            cells = st.cells
            touched: dict[Any, None] = {}  # the cells the order counts in (handles)
            sku_seen: set[str] = set()
            for line in ev.lines:
                sku, qty = line.sku, line.qty
                sb = skus.handle(sku, ts)
                skus.add(sb, SKU_UNITS, qty)
                if sku not in sku_seen:
                    sku_seen.add(sku)
                    skus.add(sb, SKU_ORDERS, 1)
                gmv = qty * price_e4(line.unit_price)
                handles, _, shop_sets = self._entry(st, self._attrs(st, sku, ts), region, ts)
                for sh in shop_sets:
                    st.shops.add(sh, seller)
                for c in handles:
                    cells.add(c, UNITS, qty)
                    cells.add(c, GMV_E4, gmv)
                    touched[c] = None
            for c in touched:
                cells.add(c, ORDERS, 1)
        elif kind == "order_cancelled":
            region = ev.region
            skus = st.skus
            for line in ev.lines:
                skus.add(skus.handle(line.sku, ts), SKU_CANCELLED, line.qty)
                handles, _, shop_sets = self._entry(
                    st, self._attrs(st, line.sku, ts), region, ts)
                for sh in shop_sets:
                    st.shops.add(sh, returner)
                for c in handles:
                    st.cells.add(c, CANCELLED_UNITS, line.qty)
        elif kind == "returned":
            qty = ev.qty
            st.skus.add(st.skus.handle(ev.sku, ts), SKU_RETURNED, qty)
            handles, _, shop_sets = self._entry(
                st, self._attrs(st, ev.sku, ts), ev.region or UNKNOWN, ts)
            for sh in shop_sets:
                st.shops.add(sh, returner)
            for c in handles:
                st.cells.add(c, RETURNED_UNITS, qty)
        elif kind == "restock_shipped":
            st.skus.add(st.skus.handle(ev.sku, ts), SKU_SHIPPED, ev.qty)
        elif kind == "restock_received":
            st.skus.add(st.skus.handle(ev.sku, ts), SKU_RECEIVED, ev.qty)
        elif kind == "stock_level":
            st.skus.stock_count(ev.sku, ts, ev.on_hand)
        # shipped / delivered movements carry no demand or stock change of their own:
        # validated and counted as processed.

    # ---------------------------------------------------------------- flushing
    def _expansions(self, size: int, start: int) -> list[tuple[int, int]]:
        """(size, start) of every window a base cell (``size``, ``start``) lies in,
        itself included: the sizes that are multiples of its own."""
        got = self._expand.get((size, start))
        if got is None:
            g = self.calendar.grain(start // self._grain_s)
            got = [(s, g[1 + 2 * i]) for i, s in enumerate(self._sizes) if s % size == 0]
            if len(self._expand) >= 100_000:
                self._expand.clear()
            self._expand[(size, start)] = got
        return got

    def flush_batch(self) -> FlushBatch:
        """Cut a flush: rows and checkpoints for everything changed since the last cut.

        The cut takes the partitions' pending marks (``PartitionState.detach``), so
        processing may go on while the batch is written. Exactly one of ``flushed(batch)``
        (the sink durably wrote it) or ``unflush(batch)`` (the write failed: the marks are
        pending again and the next cut writes the rows with their newest values) must
        follow, before the next cut.
        """
        rows: list[StateRow] = []
        checkpoints: list[Checkpoint] = []
        dedup_rows: list[DedupRow] = []
        visitor_rows: list[VisitorRow] = []
        shop_rows: list[VisitorRow] = []
        sku_rows: list[SkuRow] = []
        cuts: list[Detached] = []
        try:
            self._cut_all(cuts, rows, checkpoints, dedup_rows, visitor_rows, shop_rows, sku_rows)
        except BaseException:  # give back the partitions cut before it: nothing is lost
            for cut in cuts:
                with contextlib.suppress(Exception):
                    cut.state.reattach(cut)
            raise
        return FlushBatch(
            rows, checkpoints, dedup_rows, visitor_rows, sku_rows, list(self.pending_products),
            cuts, shop_rows,
        )

    def _cut_all(
        self, cuts: list[Detached], rows: list[StateRow], checkpoints: list[Checkpoint],
        dedup_rows: list[DedupRow], visitor_rows: list[VisitorRow],
        shop_rows: list[VisitorRow], sku_rows: list[SkuRow],
    ) -> None:
        """flush_batch's work: each partition's cut (into ``cuts`` as soon as it is taken)
        and its rows."""
        for st in self.states.values():
            if not st.needs_flush() or st.position is None:
                continue
            version = st.position
            topic, partition = st.topic, st.partition
            lg = st.ledger
            checkpoints.append(
                Checkpoint(
                    topic, partition, version, st.watermark.max_ts,
                    lg.consumed, lg.processed, lg.dead_lettered, lg.duplicates, lg.late,
                    *st.last_record,
                )
            )
            cut = st.detach()
            cuts.append(cut)
            rows += st.cells.rows(topic, partition, cut.dirty, version)
            for bucket, ids in cut.dedup[0]:
                for i in range(0, len(ids), ARRAY_CHUNK):
                    dedup_rows.append((topic, partition, bucket, ids[i : i + ARRAY_CHUNK], version))
            visitor_rows += visitor_rows_of(cut.visitors, self._expansions)
            shop_rows += visitor_rows_of(cut.shops, self._expansions)
            sku_rows += st.skus.rows(topic, partition, cut.sku_dirty, version)

    def flushed(self, batch: FlushBatch) -> None:
        """The sink wrote ``batch``: its partitions are clean up to the cut; drop what can
        no longer change."""
        if batch.product_rows:
            del self.pending_products[: len(batch.product_rows)]
        for cut in batch.cuts:
            st = cut.state
            if self.states.get((st.topic, st.partition)) is not st:
                continue  # dropped (revoked) or restored since the cut
            st.flushed_position = cut.position
            wm = st.watermark.value
            if wm is not None:
                st.dedup.expire(wm)
            st.evict(self.config.correction_horizon_ms, self.config.live_retention_ms)

    def unflush(self, batch: FlushBatch) -> None:
        """The write of ``batch`` failed (or was abandoned): its marks are pending again."""
        for cut in batch.cuts:
            st = cut.state
            if self.states.get((st.topic, st.partition)) is st:
                st.reattach(cut)
