"""The demand pipeline: engine + store + dead letters + the commit-after-flush rule.

Framework-neutral glue used by the Faust agent (``streams.app``): it receives batches
of ``Record`` with an opaque acknowledgement handle each, and acknowledges a handle only
after everything derived from its record is durable (ClickHouse rows and checkpoint,
dead letters delivered). Faust then commits acknowledged offsets.

All ClickHouse calls run on one dedicated thread, so the event loop never blocks on
I/O and the client is never used from two threads.
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
from streams.clickhouse.store import DemandStore
from streams.core.engine import BatchOutcome, DemandEngine, LateEvent, Record, Rejected
from streams.errors import SinkError

log = logging.getLogger(__name__)

T = TypeVar("T")
#: Sends one dead letter (key, value) and returns an awaitable that completes on delivery.
DeadLetterSender = Callable[[bytes | None, bytes], Awaitable[Awaitable[Any]]]
Ack = Callable[[Any], Awaitable[Any]]


class DemandPipeline:
    def __init__(
        self,
        engine: DemandEngine,
        store: DemandStore,
        send_dead_letter: DeadLetterSender,
        *,
        flush_interval_s: float = 1.0,
        max_pending_events: int = 200_000,
        retry_max_s: float = 30.0,
    ) -> None:
        self.engine = engine
        self.store = store
        self.send_dead_letter = send_dead_letter
        self.flush_interval_s = flush_interval_s
        self.max_pending_events = max_pending_events
        self.retry_max_s = retry_max_s
        self._io = ThreadPoolExecutor(max_workers=1, thread_name_prefix="c2m-clickhouse")
        self._lock = asyncio.Lock()
        self._pending_acks: list[tuple[Ack, Any]] = []
        self._pending_late: list[LateEvent] = []
        self._pending_deliveries: list[Awaitable[Any]] = []
        self._last_flush = time.monotonic()
        self.sink_healthy = True
        self.flushes = 0
        self._counted: dict[tuple[str, int], tuple[int, ...]] = {}

    async def io(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._io, fn, *args)

    # ---------------------------------------------------------------- batches
    async def handle(self, records: Sequence[Record], handles: Sequence[Any], ack: Ack) -> None:
        """Apply one batch; flush when due. ``handles[i]`` is acked once ``records[i]`` is safe."""
        async with self._lock:
            await self._restore_if_needed(records)
            started = time.perf_counter()
            outcome = self.engine.process(records)
            metrics.PROCESSING_SECONDS.observe(time.perf_counter() - started)
            self._count(records)
            metrics.BATCH_SIZE.observe(len(records))
            await self._emit(outcome)
            self._pending_acks.extend((ack, h) for h in handles)
            if (
                time.monotonic() - self._last_flush >= self.flush_interval_s
                or len(self._pending_acks) >= self.max_pending_events
            ):
                await self._flush_locked()

    async def flush_if_due(self) -> None:
        """Called by a timer so an idle stream still gets its last batch flushed."""
        if time.monotonic() - self._last_flush < self.flush_interval_s:
            return
        async with self._lock:
            await self._flush_locked()

    async def flush(self) -> None:
        async with self._lock:
            await self._flush_locked()

    async def _restore_if_needed(self, records: Sequence[Record]) -> None:
        """A partition whose first offset is not our position was (re)assigned: restore it."""
        firsts: dict[tuple[str, int], int] = {}
        for r in records:
            firsts.setdefault((r.topic, r.partition), r.offset)
        cfg = self.engine.config
        for (topic, partition), first in firsts.items():
            st = self.engine.states.get((topic, partition))
            if st is not None and st.position == first:
                continue
            loaded = await self._with_retry(
                self.store.load_partition, topic, partition, first, cfg
            )
            if loaded is None:
                self.engine.drop(topic, partition)
                if first > 0:
                    log.warning(
                        "no checkpoint for %s[%d] at or before offset %d: starting empty",
                        topic, partition, first,
                    )
                continue
            checkpoint, rows, ids = loaded
            st = self.engine.restore(checkpoint, rows, ids)
            lg = st.ledger
            self._counted[(topic, partition)] = (
                lg.consumed, lg.processed, lg.dead_lettered, lg.duplicates, lg.late,
                lg.unknown_sku_lines,
            )
            log.info(
                "restored %s[%d] at position %d (%d cells)",
                topic, partition, checkpoint.position, len(rows),
            )

    async def _emit(self, outcome: BatchOutcome) -> None:
        for rej in outcome.rejected:
            await self.dead_letter(rej)
        self._pending_late.extend(outcome.late)

    async def dead_letter(self, rej: Rejected) -> None:
        rec = rej.record
        value = build_dead_letter(
            reason=rej.reason, detail=rej.detail, topic=rec.topic, partition=rec.partition,
            offset=rec.offset, timestamp_ms=rec.timestamp_ms, value=rec.value,
        )
        metrics.DEAD_LETTERS.labels(rec.topic, rej.reason).inc()
        self._pending_deliveries.append(await self.send_dead_letter(rec.key, value))

    # ---------------------------------------------------------------- flushing
    async def _flush_locked(self) -> None:
        batch = self.engine.flush_batch()
        late, self._pending_late = self._pending_late, []
        if batch or late:
            started = time.perf_counter()
            await self._with_retry(
                self.store.write, batch, late, self.engine.config.allowed_lateness_ms
            )
            metrics.FLUSH_SECONDS.observe(time.perf_counter() - started)
            metrics.FLUSH_ROWS.labels("demand_state").inc(len(batch.rows))
            metrics.FLUSH_ROWS.labels("late_events").inc(len(late))
            metrics.FLUSH_ROWS.labels("dedup_ids").inc(len(batch.dedup_rows))
            metrics.FLUSH_ROWS.labels("checkpoints").inc(len(batch.checkpoints))
            self.engine.flushed(batch)
            self._update_gauges()
        deliveries, self._pending_deliveries = self._pending_deliveries, []
        for d in deliveries:
            await d
        acks, self._pending_acks = self._pending_acks, []
        for ack, handle in acks:
            await ack(handle)
        self._last_flush = time.monotonic()
        self.flushes += 1

    async def _with_retry(self, fn: Callable[..., T], *args: Any) -> T:
        """Retry ClickHouse I/O with capped exponential backoff until it succeeds.

        While this waits the agent does not take new batches: Faust's bounded stream
        buffer then stops fetching, so memory stays bounded (back-pressure).
        """
        delay = 0.2
        while True:
            try:
                result = await self.io(fn, *args)
                if not self.sink_healthy:
                    log.warning("ClickHouse is back")
                self.sink_healthy = True
                return result
            except SinkError as exc:
                self.sink_healthy = False
                metrics.FLUSH_RETRIES.inc()
                log.warning("%s; retrying in %.1fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.retry_max_s)

    def _count(self, records: Sequence[Record]) -> None:
        """Move the per-topic outcome counters by what the ledgers gained in this batch."""
        for tp in {(r.topic, r.partition) for r in records}:
            lg = self.engine.states[tp].ledger
            now = (lg.consumed, lg.processed, lg.dead_lettered, lg.duplicates, lg.late,
                   lg.unknown_sku_lines)
            before = self._counted.get(tp, (0, 0, 0, 0, 0, 0))
            self._counted[tp] = now
            topic = tp[0]
            for outcome, new, old in zip(
                ("consumed", "processed", "dead_lettered", "duplicate", "late"),
                now, before, strict=False,
            ):
                if new > old:
                    metrics.EVENTS.labels(topic, outcome).inc(new - old)
            if now[5] > before[5]:
                metrics.UNKNOWN_SKU_LINES.labels(topic).inc(now[5] - before[5])

    def _update_gauges(self) -> None:
        now = time.time()
        cells = 0
        for st in self.engine.states.values():
            cells += len(st.cells)
            wm = st.watermark.value
            if wm is not None:
                metrics.WATERMARK_LAG.labels(st.topic, str(st.partition)).set(now - wm / 1000)
        metrics.LIVE_CELLS.set(cells)

    def drop_partitions(self, tps: Sequence[tuple[str, int]]) -> None:
        for topic, partition in tps:
            self.engine.drop(topic, partition)

    def close(self) -> None:
        self._io.shutdown(wait=True)
