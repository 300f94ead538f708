"""The demand pipeline: engine + store + dead letters + the commit-after-flush rule.

Framework-neutral glue between the bulk consumer (``streams.ingest``) and the pure
engine. A flush writes everything derived from the records applied up to its cut
(ClickHouse rows, then the checkpoint), waits until the dead letters of those records are
delivered, and only then commits the checkpoint positions to Kafka. A Kafka commit
therefore never runs ahead of ClickHouse, and every committed offset is the position of a
checkpoint.

The cut is taken under the state lock; the write runs without it, so batches keep being
applied while the previous cut is written (one flush at a time, ``_flush_mutex``). A
failed or abandoned write hands the cut's marks back to the engine (``unflush``).

All ClickHouse calls run on one dedicated thread, so the event loop never blocks on
I/O and the client is never used from two threads. Where a flush goes is the sink's
business (``streams.sink``): ClickHouse directly (the default), or the ``c2m.sink`` topic
and the single writer process (``C2M_SINK=kafka``, for several workers on embedded chDB).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from schemas.deadletter import build_dead_letter
from streams import metrics
from streams.backoff import retry
from streams.checkpoint import TP, Committer, Cut, Pending
from streams.clickhouse.store import DemandStore
from streams.core.engine import (
    BatchOutcome,
    DemandEngine,
    FlushBatch,
    KafkaRecord,
    LateEvent,
    Rejected,
    Run,
)
from streams.errors import SinkError, SinkRejected, SinkUnavailable
from streams.pausing import SinkHealth, count_failure, count_retry
from streams.sink import ClickHouseSink, Loaded, Sink

log = logging.getLogger(__name__)

T = TypeVar("T")
#: Sends one dead letter (key, value) and returns an awaitable that completes on delivery.
DeadLetterSender = Callable[[bytes | None, bytes], Awaitable[Awaitable[Any]]]

#: between flushes, the state-size gauges are refreshed at most this often (seconds)
GAUGE_INTERVAL_S = 0.5
#: c2m_events_total's outcome label per ledger field (streams.core.engine.OUTCOME_FIELDS;
#: unknown SKU lines have their own counter)
_OUTCOMES = ("consumed", "processed", "dead_lettered", "duplicate", "late")


class DemandPipeline:
    def __init__(
        self,
        engine: DemandEngine,
        store: DemandStore | None,
        send_dead_letter: DeadLetterSender,
        *,
        flush_interval_s: float = 1.0,
        max_pending_events: int = 200_000,
        eager_events: int = 50_000,
        caught_up_events: int = 1_000,
        publish_max_lag_s: float = 5.0,
        sink: Sink | None = None,
    ) -> None:
        self.engine = engine
        self.store = store
        self.send_dead_letter = send_dead_letter
        self.commit: Committer | None = None
        self.flush_interval_s = flush_interval_s
        self.max_pending_events = max_pending_events
        self.eager_events = eager_events
        self.caught_up_events = caught_up_events
        self.publish_max_lag_s = publish_max_lag_s
        self._io = ThreadPoolExecutor(max_workers=1, thread_name_prefix="c2m-clickhouse")
        if sink is None:
            if store is None:
                raise ValueError("DemandPipeline needs a store or a sink")
            sink = ClickHouseSink(store, self.io)
        self.sink: Sink = sink
        #: c2m_sink_healthy and the write failures and retries (``streams.pausing``)
        self.health = SinkHealth(log, f"{sink.name} flush failed",
                                 f"{sink.name} sink is back; flushed the backlog")
        #: engine state: held to apply a batch, cut a flush, settle it, restore or release
        self._lock = asyncio.Lock()
        #: one flush (cut, write, settle, commit) at a time, in order
        self._flush_mutex = asyncio.Lock()
        #: taken in since the last cut besides the engine's marks (streams.checkpoint)
        self._pending = Pending()
        self._inflight_events = 0  # events of the cut being written
        #: cuts written but not published (``Sink.publish``): not committed yet
        self._held: list[Cut] = []
        self._held_events = 0
        self._held_since = 0.0  # monotonic time of the oldest held cut
        self._last_flush = time.monotonic()
        self._gauges_at = 0.0  # monotonic time of the last state-size gauge update
        self.flushes = 0
        #: flushes whose serving rows are published (``flushes`` less the held ones)
        self.published_flushes = 0

    async def io(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._io, fn, *args)

    # ---------------------------------------------------------------- collaborators
    def use_committer(self, commit: Committer) -> None:
        """Who commits a flush's checkpoint positions to Kafka (the demand consumer),
        once the flush is written and its dead letters are delivered."""
        self.commit = commit

    async def start_sink(self) -> None:
        await self.sink.start()

    async def close_sink(self) -> None:
        await self.sink.close()

    @property
    def sink_healthy(self) -> bool:
        """The last write succeeded (or none failed yet)."""
        return self.health.healthy

    @property
    def reads_from_start_without_checkpoint(self) -> bool:
        """A partition without a checkpoint has nothing in the sink, so it is read from the
        start of its log whatever the group committed (a new or reset database). True for
        the direct ClickHouse sink; the Kafka sink's restore waits for the writer instead."""
        return self.sink.name == "clickhouse"

    # ---------------------------------------------------------------- partitions asked
    def position(self, topic: str, partition: int) -> int | None:
        """The next offset to apply of a partition held here (None: nothing applied)."""
        st = self.engine.states.get((topic, partition))
        return None if st is None else st.position

    def flushed_position(self, topic: str, partition: int) -> int | None:
        """The position of the partition's last written flush (None: never flushed)."""
        st = self.engine.states.get((topic, partition))
        return None if st is None else st.flushed_position

    def last_record(self, topic: str, partition: int) -> tuple[int, int] | None:
        """(Kafka timestamp, fingerprint) of the record the partition's state ends on (as
        restored from its checkpoint); None for a partition not held here."""
        st = self.engine.states.get((topic, partition))
        return None if st is None else st.last_record

    # ---------------------------------------------------------------- batches
    async def handle_runs(self, runs: Sequence[Run], oldest_ts_ms: int | None = None) -> None:
        """Apply one batch given as runs (topic, partition, its records in offset order),
        as ``getmany`` returns them. Does not flush.

        ``oldest_ts_ms``: Kafka timestamp of the batch's oldest record, for the end-to-end
        latency metric (observed when the flush covering the batch is committed).
        """
        async with self._lock:
            runs = self._skip_applied(runs)
            if not runs:
                return
            n = sum(len(run) for _, _, run in runs)
            started = time.perf_counter()
            outcome = self.engine.process_runs(runs)
            metrics.PROCESSING_SECONDS.observe(time.perf_counter() - started)
            metrics.BATCH_SIZE.observe(n)
            self._count(outcome.counts)
            await self._emit(outcome)
            self._pending.events += n
            if oldest_ts_ms is not None and oldest_ts_ms > 0:
                self._pending.record_ts.append(oldest_ts_ms)
            if time.monotonic() - self._gauges_at >= GAUGE_INTERVAL_S:
                self._update_gauges()

    async def apply_product(self, record: KafkaRecord) -> bool:
        """One ``shop.products`` record (the catalog reader's), under the state lock like a
        batch; a rejected one is dead-lettered. True when applied."""
        async with self._lock:
            rejected = self.engine.apply_product(record)
        if rejected is not None:
            await self.dead_letter(rejected)
            return False
        return True

    @property
    def catalog_size(self) -> int:
        """SKUs in the engine's catalog."""
        return len(self.engine.catalog)

    def _skip_applied(self, runs: Sequence[Run]) -> Sequence[Run]:
        """Drop records at or before a partition's position (a re-delivery is harmless).

        Each run is in offset order, so only its first record needs a look.
        """
        states = self.engine.states
        kept: list[Run] | None = None
        for i, (topic, partition, run) in enumerate(runs):
            st = states.get((topic, partition))
            if st is None or st.position is None or run[0].offset >= st.position:
                if kept is not None:
                    kept.append((topic, partition, run))
                continue
            if kept is None:
                kept = list(runs[:i])
            position = st.position
            rest = [r for r in run if r.offset >= position]
            if rest:
                kept.append((topic, partition, rest))
        return runs if kept is None else kept

    def flush_due(self, caught_up: bool = False) -> bool:
        """Whether to cut a flush now (asked while none is running).

        A cut is due at once while written cuts wait to be published (``_flush_once``), and
        once ``eager_events`` (or ``max_pending_events``, if smaller) are
        pending, so under load the writer goes from one write straight to the next instead
        of idling until the interval while the backlog grows toward ``max_pending_events``,
        where fetching stops; otherwise once the interval has passed with anything pending.
        ``caught_up`` (the last poll found nothing new): nothing is waiting to be applied,
        so a cut is due as soon as ``caught_up_events`` are pending and a quarter of the
        interval has passed, rather than keeping them back for the rest of the interval
        (the floors keep a trickle of events from turning into a stream of tiny inserts).
        """
        pending = self._pending.events
        if pending >= min(self.eager_events, self.max_pending_events) or self._held:
            return True  # (held cuts: publish them, with whatever is pending)
        since = time.monotonic() - self._last_flush
        if caught_up and pending >= self.caught_up_events and since >= self.flush_interval_s / 4:
            return True
        return (
            since >= self.flush_interval_s
            and (
                pending > 0
                or bool(self._pending.late)
                or bool(self.engine.pending_products)
            )
        )

    @property
    def pending_events(self) -> int:
        """Events applied since the last cut."""
        return self._pending.events

    @property
    def unflushed_events(self) -> int:
        """Events applied and not yet written and committed: pending plus the cut in flight."""
        return self._pending.events + self._inflight_events

    @property
    def uncommitted_events(self) -> int:
        """Events applied and not yet committed: unflushed, or written and not published."""
        return self.unflushed_events + self._held_events

    @property
    def backlogged(self) -> bool:
        """``max_pending_events`` are unflushed: fetching waits for the flush in flight."""
        return self.unflushed_events >= self.max_pending_events

    async def flush(self, hold_ok: bool = False) -> bool:
        """One flush attempt: ClickHouse, dead letters, then the Kafka commit.

        Batches may be applied while it writes. Returns False if the sink failed;
        everything stays pending for the next try. ``hold_ok``: the flush may be written
        without being published when the next one is already due (``_flush_once``); a
        flush without it (the last one before stopping, one on revoke) publishes and
        commits everything written.
        """
        async with self._flush_mutex:
            return await self._flush_once(hold_ok)

    # ---------------------------------------------------------------- partitions
    async def restore(
        self, topic: str, partition: int, committed: int | None = None
    ) -> int | None:
        """Load a newly assigned partition from its latest checkpoint.

        Returns the position to seek to, or None when there is no checkpoint (then the
        consumer starts at the group's committed offset, or the earliest one).
        ``committed`` (the group's committed offset) lets an asynchronous sink wait until
        it holds the checkpoint of that commit.
        """
        async with self._lock:
            loaded = await self._load_with_retry(topic, partition, committed)
            if loaded is None:
                self.engine.drop(topic, partition)
                return None
            checkpoint, rows, ids = loaded.checkpoint, loaded.cells, loaded.dedup_ids
            self.engine.restore(checkpoint, rows, ids, loaded.sku_hours)
            log.info(
                "restored %s[%d] at position %d (%d cells, %d dedup ids)",
                topic, partition, checkpoint.position, len(rows), len(ids),
            )
            return checkpoint.position

    async def release(self, tps: Sequence[TP], timeout_s: float = 10.0) -> None:
        """Partitions are being revoked: flush and commit them, then forget them.

        Within ``timeout_s`` in all, counting the wait for a flush already in flight; past
        it the partitions are dropped unflushed and the next owner restores their last
        checkpoint (a rebalance must not wait on a hung sink).
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        try:
            await asyncio.wait_for(self._flush_mutex.acquire(), timeout=timeout_s)
        except TimeoutError:
            log.warning("the flush in flight outlasted the revoke; the next owner restores "
                        "the last checkpoint")
        else:
            try:
                await asyncio.wait_for(
                    self._flush_once(), timeout=max(deadline - loop.time(), 0.1)
                )
            except TimeoutError:
                log.warning("flush on revoke timed out; the next owner restores its checkpoint")
            finally:
                self._flush_mutex.release()
        async with self._lock:
            for topic, partition in tps:
                self.engine.drop(topic, partition)
                metrics.forget_partition(topic, partition)
            self._update_gauges()

    # ---------------------------------------------------------------- internals
    async def _emit(self, outcome: BatchOutcome) -> None:
        for rej in outcome.rejected:
            await self.dead_letter(rej)
        self._pending.late.extend(outcome.late)

    async def dead_letter(self, rej: Rejected) -> None:
        rec = rej.record
        value = build_dead_letter(
            reason=rej.reason, detail=rej.detail, topic=rec.topic, partition=rec.partition,
            offset=rec.offset, timestamp_ms=rec.timestamp, value=rec.value,
        )
        metrics.DEAD_LETTERS.labels(rec.topic, rej.reason).inc()
        self._pending.deliveries.append(await self.send_dead_letter(rec.key, value))

    async def _flush_once(self, hold_ok: bool = False) -> bool:
        """Cut under the state lock, write without it, settle under it, then commit.

        The caller holds ``_flush_mutex``. If the write fails or this coroutine is cancelled
        (a revoke timed out), the cut is handed back: the engine's marks and the
        cut's late events, dead-letter deliveries and latency stamps are pending
        again.

        Publishing (the sink's serving rows and checkpoints, ``Sink.publish``) may wait: a
        sink that ``defers_publish`` writes the cut's rows and, when ``hold_ok`` and the
        next cut is already due by its size (a backlog is being worked off) and the oldest
        held cut is younger than ``publish_max_lag_s``, holds the cut. The next flush
        publishes every held cut with its own, and commits them in order. Until then they
        are not committed: a crash reads them again from the last checkpoint, as a crash
        between a write and its checkpoint always did.
        """
        async with self._lock:
            cp = self._pending.cut(self.engine.flush_batch())
            self._inflight_events = cp.events
            self._last_flush = time.monotonic()
            if not self._held:
                self._held_since = time.monotonic()
        written = hold = False
        try:
            if cp.empty and not self._held:
                written = True  # nothing to write or publish (deliveries are awaited below)
            else:
                written, hold = await self._write(cp.batch, cp.late, hold_ok)
        finally:
            async with self._lock:
                if written:
                    self.engine.flushed(cp.batch)
                    self._update_gauges()
                else:
                    self.engine.unflush(cp.batch)
                    self._pending.hand_back(cp)
                self._inflight_events = 0
        if not written:
            return False
        self._held.append(cp)
        self._held_events += cp.events
        self.flushes += 1
        metrics.UNPUBLISHED_FLUSHES.set(len(self._held) if hold else 0)
        if hold:
            return True
        held, self._held = self._held, []
        self.published_flushes += len(held)
        try:
            for cut in held:
                await cut.commit(self.commit)
        finally:
            self._held_events = 0  # written (and committed, unless that raised)
        for cut in held:
            self._observe_end_to_end(cut.record_ts)
        return True

    def _may_hold(self, hold_ok: bool) -> bool:
        """Whether a cut just written may wait to be published (``_flush_once``)."""
        return (
            hold_ok
            and self.sink.defers_publish
            and self._pending.events >= min(self.eager_events, self.max_pending_events)
            and time.monotonic() - self._held_since < self.publish_max_lag_s
        )

    async def _write(
        self, batch: FlushBatch, late: list[LateEvent], hold_ok: bool
    ) -> tuple[bool, bool]:
        """Write one cut, then publish it with the held ones unless it may wait:
        (written, held)."""
        started = time.perf_counter()
        self.health.attempt()
        try:
            await self.sink.write(batch, late, self.engine.config.allowed_lateness_ms)
            hold = self._may_hold(hold_ok)
            if not hold:
                await self.sink.publish()
        except SinkRejected as exc:
            self.health.failed(exc, retrying=False)
            raise  # not an outage: retrying cannot help, the process stops
        except SinkError as exc:
            self.health.failed(exc)
            return False, False
        self.health.succeeded()
        metrics.FLUSH_SECONDS.observe(time.perf_counter() - started)
        metrics.FLUSH_ROWS.labels("demand_state").inc(len(batch.rows))
        metrics.FLUSH_ROWS.labels("visitor_cells").inc(sum(len(r[-1]) for r in batch.visitor_rows))
        metrics.FLUSH_ROWS.labels("sku_state").inc(len(batch.sku_rows))
        metrics.FLUSH_ROWS.labels("products").inc(len(batch.product_rows))
        metrics.FLUSH_ROWS.labels("dedup_ids").inc(sum(len(r[3]) for r in batch.dedup_rows))
        metrics.FLUSH_ROWS.labels("late_events").inc(len(late))
        metrics.FLUSH_ROWS.labels("checkpoints").inc(len(batch.checkpoints))
        return True, hold

    async def _load_with_retry(
        self, topic: str, partition: int, committed: int | None
    ) -> Loaded | None:
        """Retry restore reads with capped exponential backoff until they succeed
        (``SinkRejected``: counted and raised, the process stops)."""

        async def load() -> Loaded | None:
            try:
                return await self.sink.load_partition(
                    topic, partition, committed, self.engine.config
                )
            except SinkRejected:
                count_failure("read")
                raise

        def failed(exc: BaseException, delay_s: float) -> None:
            count_failure("read")
            log.warning("%s; retrying in %.1fs", exc, delay_s)

        return await retry(load, SinkUnavailable, on_failure=failed, on_retry=count_retry)

    @staticmethod
    def _count(counts: dict[str, list[int]]) -> None:
        """Move the per-topic outcome counters by what a batch added to the ledgers."""
        for topic, added in counts.items():
            for outcome, n in zip(_OUTCOMES, added, strict=False):
                if n:
                    metrics.EVENTS.labels(topic, outcome).inc(n)
            if added[-1]:
                metrics.UNKNOWN_SKU_LINES.labels(topic).inc(added[-1])

    @staticmethod
    def _observe_end_to_end(stamps: list[int]) -> None:
        now_ms = time.time() * 1000
        for ts in stamps:
            metrics.END_TO_END_SECONDS.observe(max(now_ms - ts, 0.0) / 1000)

    def _update_gauges(self) -> None:
        """The state-size gauges (live cells, dedup ids, pending visitors, watermark lag):
        after every flush, release and restore, and at most every GAUGE_INTERVAL_S between
        (they visit every partition)."""
        self._gauges_at = time.monotonic()
        now = time.time()
        cells = dedup_ids = visitors = 0
        for st in self.engine.states.values():
            cells += len(st.cells)
            dedup_ids += len(st.dedup)
            visitors += st.pending_visitors()
            wm = st.watermark.value
            if wm is not None:
                metrics.WATERMARK_LAG.labels(st.topic, str(st.partition)).set(now - wm / 1000)
        metrics.LIVE_CELLS.set(cells)
        metrics.DEDUP_IDS.set(dedup_ids)
        metrics.VISITOR_ENTRIES.set(visitors)

    def close(self) -> None:
        self._io.shutdown(wait=True)
