"""The demand consumer: bulk fetch below Faust's per-event stream machinery.

Faust's per-message path (Event objects, stream processors, per-message acks) costs
~150-200 us an event; this service runs inside the Faust app (a ``mode.Service`` attached
to it, sharing its loop, producer, web server and lifecycle) but consumes the demand
topics with ``aiokafka``'s ``getmany`` in batches of raw records and hands them to the
pipeline. Stopping the service (SIGTERM: the app stops its services before its producer)
ends the current batch, flushes and commits, then leaves the group.

Offsets: ClickHouse is the source of truth. On assignment a partition is restored from
its latest checkpoint and the consumer seeks to the checkpoint position; without a
checkpoint it starts at the group's committed offset (or the earliest). After every
flush the checkpoint positions are committed, so lag tools see real progress. On
revocation the partition is flushed and committed before it is released.

Flushes run in the background: while one cut is written, the next batches are fetched
and applied (one flush at a time; ``DemandPipeline`` holds the state lock only to cut and
settle). Back-pressure: once ``max_pending_events`` events are unflushed (the cut being
written plus those applied since), fetching waits for the running flush. When a flush
fails (ClickHouse down or slow) the consumer pauses all its partitions and keeps polling
(so it stays in the group) while retrying the flush with capped exponential backoff;
nothing new is fetched, so memory stays bounded by what was consumed before the failure
(at most ``max_pending_events`` events, plus one batch). That loop is
``streams.pausing.PausingLoop``, shared with the writer.

The consumer asks the pipeline, never the engine, what it needs of a partition (the
position applied, the position flushed, the record a checkpoint ends on).
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import (
    CorruptRecordException,
    KafkaError,
    OffsetOutOfRangeError,
    RecordTooLargeError,
    UnsupportedCodecError,
)
from mode import Service

from streams import metrics
from streams.backoff import Backoff, retry
from streams.checkpoint import TP
from streams.core.engine import DEMAND_TOPICS, Run, record_fingerprint
from streams.errors import C2MError
from streams.pausing import PausingLoop, run_until_fatal
from streams.pipeline import DemandPipeline

log = logging.getLogger(__name__)

#: What ``getmany`` raises for a record batch it cannot read: a codec without its library
#: (or unknown), a batch that fails its CRC, a record larger than the fetch size (brokers
#: before KIP-74). The batch is data, not a reason to crash: its partition is stopped.
UNREADABLE = (UnsupportedCodecError, CorruptRecordException, RecordTooLargeError)
_TP_IN_TEXT = re.compile(r"topic='([^']+)', partition=(\d+)")


def _fmt(tps: Iterable[TP]) -> str:
    by_topic: dict[str, list[int]] = {}
    for topic, partition in tps:
        by_topic.setdefault(topic, []).append(partition)
    return ", ".join(f"{t}{sorted(p)}" for t, p in sorted(by_topic.items())) or "none"


class _NothingFetched(Exception):
    """A fetch came back empty (``DemandConsumer.log_mismatch`` fetches again)."""


@dataclass(frozen=True, slots=True)
class StoppedPartition:
    """A source partition this worker cannot go on with: it is paused, everything else
    goes on, and it is reported (``/readyz``, ``/api/stats``, ``c2m_partition_stopped``)
    until an operator acts (docs/ARCHITECTURE.md, "Failure handling")."""

    topic: str
    partition: int
    #: ``log_mismatch``: the checkpoint is not from the log being read; ``unreadable``:
    #: a record batch the consumer cannot read (codec, corruption, size)
    reason: str
    offset: int  #: where the partition stopped (its next offset to process)
    detail: str
    since: float = field(default_factory=time.time)

    def as_dict(self) -> dict[str, Any]:
        return {"topic": self.topic, "partition": self.partition, "reason": self.reason,
                "offset": self.offset, "detail": self.detail, "since": round(self.since, 3)}


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, ingest: DemandConsumer) -> None:
        self.ingest = ingest

    async def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        revoked = list(revoked)
        tps = [(tp.topic, tp.partition) for tp in revoked]
        log.info("partitions revoked: %s", _fmt(tps))
        if tps:
            async with self.ingest.poll_lock:
                # Until the new assignment arrives, aiokafka still fetches the old
                # partitions; records of a released partition must not be applied to a
                # fresh state (it would be flushed with a ledger and cells that start
                # from zero at a later position).
                self.ingest.owned.difference_update(tps)
                for revoked_tp in revoked:
                    self.ingest.forget_stopped(revoked_tp)
                await self.ingest.pipeline.release(tps)

    async def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        consumer = self.ingest.consumer
        if consumer is None:  # pragma: no cover - assignments only come after start
            return
        log.info("partitions assigned: %s", _fmt([(tp.topic, tp.partition) for tp in assigned]))
        metrics.REBALANCES.inc()
        # Under the poll lock: no batch is fetched or applied while partitions are being
        # restored, so no record can be applied to a state that a restore then replaces.
        async with self.ingest.poll_lock:
            for tp in assigned:
                committed = await self.ingest.committed(tp)
                try:
                    position = await self.ingest.pipeline.restore(
                        tp.topic, tp.partition, committed
                    )
                except C2MError as exc:  # refused by ClickHouse: the consumer stops
                    self.ingest.fatal = exc
                    return
                if position is not None:
                    mismatch = await self.ingest.log_mismatch(tp, position)
                    if mismatch is not None:
                        self.ingest.stop_partition(tp, "log_mismatch", position, mismatch)
                        continue
                    consumer.seek(tp, position)
                elif self.ingest.pipeline.reads_from_start_without_checkpoint:
                    # no checkpoint: nothing of this log is in ClickHouse (a new or reset
                    # database), whatever offset the group committed for an earlier one
                    await consumer.seek_to_beginning(tp)
                self.ingest.owned.add((tp.topic, tp.partition))
            if self.ingest.paused:  # the sink is failing: new partitions wait too
                consumer.pause(*assigned)
        self.ingest.assigned.set()
        metrics.PARTITIONS_ASSIGNED.set(len(consumer.assignment()))


class DemandConsumer(Service):
    def __init__(
        self,
        bootstrap: str,
        group_id: str,
        pipeline: DemandPipeline,
        *,
        batch_max_events: int = 10_000,
        rebalance_timeout_s: float = 5.0,
        session_timeout_s: float = 10.0,
        client_config: dict[str, Any] | None = None,
        topics: tuple[str, ...] = DEMAND_TOPICS,
        start_after: asyncio.Event | None = None,
        on_fatal: Callable[[C2MError], None] | None = None,
        apply: Callable[[Sequence[Run], int | None], Awaitable[None]] | None = None,
    ) -> None:
        super().__init__()
        self.bootstrap = bootstrap
        self.group_id = group_id
        self.pipeline = pipeline
        #: where the runs of a fetched batch go and are applied before ``poll`` returns:
        #: the app's demand agent (``streams.app``), else the pipeline directly
        self.apply_runs = apply
        self.batch_max_events = batch_max_events
        self.rebalance_timeout_s = rebalance_timeout_s
        self.session_timeout_s = session_timeout_s
        self.client_config = client_config or {}
        self.topics = topics
        self.consumer: AIOKafkaConsumer | None = None
        self.assigned = asyncio.Event()
        self._stopping = asyncio.Event()
        #: poll, flush in the background, pause and retry while the sink fails
        self.pausing = PausingLoop(self, self._pause_all, self._resume_all, self._stopping,
                                   background=True)
        #: consuming starts once this is set (the catalog read to its end)
        self._start_after = start_after
        #: an error no retry can fix ends consuming; this decides what then (the app stops)
        self._on_fatal = on_fatal
        self.finished = asyncio.Event()
        #: held while fetching+applying a batch and while a rebalance restores partitions
        self.poll_lock = asyncio.Lock()
        #: partitions restored and not yet released: only their records are applied
        self.owned: set[TP] = set()
        #: an error no retry can fix, met in a rebalance callback: ``run`` raises it
        self.fatal: C2MError | None = None
        #: partitions stopped (paused for good) with their reason: see StoppedPartition
        self.stopped: dict[TP, StoppedPartition] = {}
        #: reads the record a checkpoint ends on (no group, never commits)
        self._probe: AIOKafkaConsumer | None = None
        #: an unreadable batch not yet traced to its partition: read them one at a time
        self._isolating = False
        #: held while the lag is asked of the broker; the consumer stops only outside it
        self._lag_lock = asyncio.Lock()
        self._consuming = False

    @property
    def paused(self) -> bool:
        """The sink is failing: every partition is paused while the flush is retried."""
        return self.pausing.paused

    @Service.task
    async def _demand(self) -> None:
        """The service's one task: consume once ``start_after`` is set."""
        if self._start_after is not None:
            await self._start_after.wait()
        await run_until_fatal(self.run, self._on_fatal)

    async def on_stop(self) -> None:
        await self.finish()

    async def finish(self, timeout_s: float = 30.0) -> None:
        """Stop after the current batch: final flush and commit, then leave the group."""
        self._stopping.set()
        if self.consumer is not None:
            try:
                await asyncio.wait_for(self.finished.wait(), timeout=timeout_s)
            except TimeoutError:
                log.warning("demand consumer did not stop in %.0fs", timeout_s)

    async def run(self) -> None:
        self.pipeline.use_committer(self._commit)
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            group_id=self.group_id,
            client_id=f"{self.group_id}-demand",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=self.batch_max_events,
            rebalance_timeout_ms=int(self.rebalance_timeout_s * 1000),
            session_timeout_ms=int(self.session_timeout_s * 1000),
            heartbeat_interval_ms=int(min(3.0, self.session_timeout_s / 3) * 1000),
            max_partition_fetch_bytes=4 * 1024 * 1024,
            fetch_max_bytes=32 * 1024 * 1024,
            **self.client_config,
        )
        self.consumer = consumer
        self._probe = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap, group_id=None, client_id=f"{self.group_id}-probe",
            enable_auto_commit=False, auto_offset_reset="none",
            max_partition_fetch_bytes=4 * 1024 * 1024, **self.client_config,
        )
        await self._probe.start()
        await self.pipeline.start_sink()
        consumer.subscribe(list(self.topics), listener=_Rebalance(self))
        await consumer.start()
        self._consuming = True
        try:
            await self.pausing.run()
            if self.pipeline.pending_events or self.pipeline.flush_due():
                await self.pipeline.flush()
        finally:
            async with self._lag_lock:  # a lag report in progress ends first
                self._consuming = False
            await consumer.stop()
            if self._probe is not None:
                await self._probe.stop()
            await self.pipeline.close_sink()
            self.finished.set()

    # ---------------------------------------------------------------- stopped partitions
    def stop_partition(self, tp: TopicPartition, reason: str, offset: int, detail: str) -> None:
        """Pause ``tp`` for good (until it is reassigned after an operator acted)."""
        key = (tp.topic, tp.partition)
        self.owned.discard(key)
        if self.consumer is not None and tp in self.consumer.assignment():
            self.consumer.pause(tp)
        if key in self.stopped:
            return
        self.stopped[key] = StoppedPartition(tp.topic, tp.partition, reason, offset, detail)
        metrics.PARTITION_STOPPED.labels(tp.topic, str(tp.partition), reason).set(1)
        log.error("partition %s[%d] stopped at offset %d (%s): %s", tp.topic, tp.partition,
                  offset, reason, detail)

    def forget_stopped(self, tp: TopicPartition) -> None:
        gone = self.stopped.pop((tp.topic, tp.partition), None)
        if gone is not None:
            metrics.PARTITION_STOPPED.remove(gone.topic, str(gone.partition), gone.reason)

    def resumable(self, consumer: AIOKafkaConsumer) -> list[TopicPartition]:
        """The assigned partitions that may be resumed (not stopped)."""
        return [tp for tp in consumer.assignment()
                if (tp.topic, tp.partition) not in self.stopped]

    async def log_mismatch(self, tp: TopicPartition, position: int) -> str | None:
        """Why the checkpoint restored for ``tp`` (next offset ``position``) does not belong
        to the log being read, or None when it does (or cannot be told: a checkpoint of
        an older version, or the checked record removed by retention with nothing unread
        lost). The record at ``position - 1`` is fetched and compared with what the
        checkpoint stored; end offsets are never trusted (the embedded broker reports
        wrong ones)."""
        last_record = self.pipeline.last_record(tp.topic, tp.partition)
        if last_record is None or position <= 0 or last_record[1] == 0:
            return None
        probe = self._probe
        if probe is None:
            return None
        where = f"offset {position - 1}"
        probe.assign([tp])

        async def fetch() -> list[Any] | str | None:
            """The record at ``position - 1`` (an empty fetch raises: try again), or the
            answer when the log no longer holds it."""
            probe.seek(tp, position - 1)
            try:
                got = await probe.getmany(tp, timeout_ms=2000, max_records=1)
            except OffsetOutOfRangeError:
                start = (await probe.beginning_offsets([tp]))[tp]
                if start == position:
                    return None  # only the checked record expired; nothing unread is lost
                if start > position:
                    return (f"records {position}..{start - 1} were deleted from the log "
                            "before they were processed (retention)")
                return f"the log ends before the checkpoint's {where}"
            records: list[Any] = got.get(tp, [])
            if not records:
                raise _NothingFetched
            return records

        def failed(exc: BaseException, delay_s: float) -> None:
            if not isinstance(exc, _NothingFetched):
                log.warning("checking %s[%d] at %s: %s", tp.topic, tp.partition, where,
                            type(exc).__name__)

        try:
            got = await retry(fetch, (KafkaError, _NothingFetched), attempts=3,
                              backoff=Backoff(0.0, 0.0), on_failure=failed)
        except (KafkaError, _NothingFetched):
            return f"no record at the checkpoint's {where}: the log ends before it"
        if not isinstance(got, list):
            return got
        rec = got[0]
        seen = (-1 if rec.timestamp is None else rec.timestamp, record_fingerprint(rec))
        if rec.offset == position - 1 and seen == last_record:
            return None
        return (f"the record at {where} is not the one the checkpoint ends on: the "
                "topic was recreated, the broker reset, or this is another cluster")

    async def committed(self, tp: TopicPartition) -> int | None:
        """The group's committed offset of ``tp`` (None if there is none).

        Retried until the broker answers: restoring without knowing it could let an
        asynchronous sink answer "no checkpoint" for a partition whose state is in flight.
        """
        consumer = self.consumer
        if consumer is None:
            return None

        def unknown(exc: BaseException, delay_s: float) -> None:
            log.warning("committed offset of %s[%d] unknown: %s; retrying", tp.topic,
                        tp.partition, type(exc).__name__)

        offset = await retry(lambda: consumer.committed(tp), KafkaError,
                             backoff=Backoff(0.2, 5.0), on_failure=unknown)
        return None if offset is None or offset < 0 else int(offset)

    # ---------------------------------------------------------------- the loop's side
    async def poll(self) -> int:
        """Fetch one batch and apply what this worker owns (``PausingLoop``)."""
        if self.fatal is not None:
            raise self.fatal
        consumer = self.consumer
        return 0 if consumer is None else await self._poll(consumer)

    def flush_due(self, caught_up: bool) -> bool:
        return self.pipeline.flush_due(caught_up=caught_up)

    def backlogged(self) -> bool:
        return self.pipeline.backlogged

    async def flush(self) -> bool:
        return await self.pipeline.flush(hold_ok=True)

    def _pause_all(self) -> None:
        if self.consumer is not None:
            self.consumer.pause(*self.consumer.assignment())

    def _resume_all(self) -> None:
        if self.consumer is not None:
            self.consumer.resume(*self.resumable(self.consumer))

    async def _poll(self, consumer: AIOKafkaConsumer) -> int:
        """Fetch one batch and apply what this worker owns; returns the records fetched."""
        async with self.poll_lock:
            if self._isolating:
                return await self._poll_each(consumer)
            try:
                batches = await consumer.getmany(
                    timeout_ms=100, max_records=self.batch_max_events
                )
            except UNREADABLE as exc:
                await self._unreadable(consumer, exc)
                return 0
            return await self._apply(batches)

    async def _apply(self, batches: dict[TopicPartition, list[Any]]) -> int:
        if not batches:
            return 0
        owned = self.owned
        # aiokafka's records as they are (KafkaRecord), in its runs per partition
        runs: list[Run] = [
            (tp.topic, tp.partition, msgs)
            for tp, msgs in batches.items()
            if (tp.topic, tp.partition) in owned
        ]
        if runs:
            apply = self.apply_runs or self.pipeline.handle_runs
            await apply(runs, min(msgs[0].timestamp for msgs in batches.values()))
        return sum(len(msgs) for msgs in batches.values())

    async def _unreadable(self, consumer: AIOKafkaConsumer, exc: Exception) -> None:
        """``getmany`` met a batch it cannot read. Records it had already taken from other
        partitions in that call are lost with the exception, so every owned partition is
        sought back to what the engine has applied. The partition of the bad batch is
        stopped: the one the error names, else the one that raises again when the
        partitions are read one at a time (``_poll_each``) until it is found."""
        for tp in consumer.assignment():
            key = (tp.topic, tp.partition)
            if key not in self.owned:
                continue
            position = self.pipeline.position(*key)
            if position is not None:
                consumer.seek(tp, position)
            else:
                await consumer.seek_to_beginning(tp)  # nothing applied yet
        culprit = self._named(exc)
        if culprit is not None:
            await self._narrow(consumer, culprit, exc)
        else:
            log.warning("a record batch could not be read (%s): reading the partitions one "
                        "at a time to find it", type(exc).__name__)
            self._isolating = True

    async def _poll_each(self, consumer: AIOKafkaConsumer) -> int:
        """Read every owned partition alone (after an unreadable batch no error named):
        the one whose own read raises is stopped, the others are applied as usual."""
        fetched = 0
        budget = self.batch_max_events
        for tp in sorted(consumer.assignment()):
            if (tp.topic, tp.partition) not in self.owned or budget <= 0:
                continue
            try:
                batches = await consumer.getmany(tp, timeout_ms=0, max_records=budget)
            except UNREADABLE as exc:
                await self._narrow(consumer, tp, exc)
                self._isolating = False
                continue
            n = await self._apply(batches)
            fetched += n
            budget -= n
        if not fetched:
            await asyncio.sleep(0.05)  # nothing buffered yet: let the fetcher work
        return fetched

    async def _narrow(self, consumer: AIOKafkaConsumer, tp: TopicPartition,
                      exc: Exception) -> None:
        """Apply ``tp``'s records one at a time from what the engine has applied up to the
        unreadable batch, then stop the partition there (its offset is then the first one
        that cannot be read). Bounded: the records before the batch in one fetch."""
        position = self.pipeline.position(tp.topic, tp.partition)
        if position is not None:
            consumer.seek(tp, position)
        else:
            await consumer.seek_to_beginning(tp)
        for _ in range(100_000):
            try:
                batches = await consumer.getmany(tp, timeout_ms=2000, max_records=1)
            except UNREADABLE as again:
                exc = again
                break
            if not batches:
                break  # the batch did not come back: stop where the partition is
            await self._apply(batches)
        self._stop_unreadable(tp, exc)

    def _stop_unreadable(self, tp: TopicPartition, exc: Exception) -> None:
        position = self.pipeline.position(tp.topic, tp.partition)
        offset = position if position is not None else 0
        if isinstance(exc, RecordTooLargeError) and len(exc.args) >= 3:
            offset = int(exc.args[2])
        detail = exc.args[0] if exc.args else exc
        self.stop_partition(tp, "unreadable", offset, f"{type(exc).__name__}: {detail!s}"[:300])

    @staticmethod
    def _named(exc: Exception) -> TopicPartition | None:
        """The partition an error names, if it does (RecordTooLargeError, CRC errors)."""
        for arg in exc.args:
            if isinstance(arg, TopicPartition):
                return arg
        m = _TP_IN_TEXT.search(str(exc))
        return TopicPartition(m.group(1), int(m.group(2))) if m else None

    async def report_lag(self) -> None:
        """Records between the end of each owned partition's log and its last flushed
        position (the committed offset), i.e. what is not in the sink yet: an
        ``@app.timer`` of the worker calls this every ``C2M_LAG_INTERVAL_SECONDS``. Asked
        of the broker (ListOffsets), so it keeps growing while a sink outage holds the
        consumer paused and nothing is fetched."""
        async with self._lag_lock:
            consumer = self.consumer
            if consumer is None or not self._consuming:
                return  # not consuming (yet, or any more)
            tps = [tp for tp in consumer.assignment() if (tp.topic, tp.partition) in self.owned]
            if not tps:
                return
            try:
                ends = await consumer.end_offsets(tps)
                flushed = {
                    tp: position for tp in tps
                    if (position := self.pipeline.flushed_position(tp.topic, tp.partition))
                    is not None
                }
                unflushed = [tp for tp in tps if tp not in flushed]
                # never flushed: everything from the start of the log is pending
                starts = await consumer.beginning_offsets(unflushed) if unflushed else {}
            except KafkaError as exc:
                log.debug("consumer lag unknown: %s", type(exc).__name__)
                return
            for tp, end in ends.items():
                done = flushed.get(tp, starts.get(tp))
                if done is None or (tp.topic, tp.partition) not in self.owned:
                    continue  # released while the broker answered
                metrics.CONSUMER_LAG.labels(tp.topic, str(tp.partition)).set(
                    max(end - done, 0)
                )

    async def _commit(self, positions: dict[TP, int]) -> None:
        consumer = self.consumer
        if consumer is None:
            return
        assignment = consumer.assignment()
        offsets = {
            TopicPartition(topic, partition): position
            for (topic, partition), position in positions.items()
            if TopicPartition(topic, partition) in assignment
        }
        if offsets:
            try:
                await consumer.commit(offsets)
            except KafkaError as exc:
                # The checkpoint in ClickHouse is authoritative; a missed commit only
                # makes lag look higher until the next one.
                log.warning("offset commit failed: %s", type(exc).__name__)
