"""``c2m writer``: the single process that owns ClickHouse when workers use ``C2M_SINK=kafka``.

Embedded chDB allows one process per engine path, so with several workers only this
process opens it. It is a Faust app like the worker (signals, graceful stop, web server)
with one service (``SinkWriter``, a ``mode.Service`` attached to the app): a bulk
aiokafka consumer of ``c2m.sink`` (group ``<C2M_APP_ID>-writer``)
that merges everything it fetched into one batch, writes it with one insert per table
(checkpoints last, ``DemandStore.write``), and only then commits the ``c2m.sink`` offsets.
A failed write pauses the consumer and is retried with capped exponential backoff (the
demand consumer's loop, ``streams.pausing``).

Its web server (``C2M_WRITER_HOST``:``C2M_WRITER_PORT``, loopback by default) serves
``/api/sink/state?topic=&partition=``: the latest checkpointed state of a source
partition, which workers restore from on assignment (``streams.kafka.sink``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import faust
import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError
from faust.app.base import BootStrategy
from mode import Service
from prometheus_client import start_http_server

from streams import metrics
from streams.alerting import AlertService
from streams.app import (
    FatalStop,
    attach_alerts,
    attach_checkpoint_pruning,
    attach_market_refresh,
    attach_service,
    faust_config,
    open_store,
)
from streams.clickhouse.client import connect
from streams.clickhouse.store import DemandStore
from streams.core.engine import FlushBatch, LateEvent
from streams.errors import C2MError, SinkError, SinkRejected
from streams.kafka.topics import ensure_topics
from streams.pausing import PausingLoop, SinkHealth, run_until_fatal
from streams.settings import Settings
from streams.sink import SINK_TOPIC, decode_flush, encode_loaded, merge_flushes

log = logging.getLogger(__name__)
T = TypeVar("T")


class SinkWriter(Service):
    """Consume ``c2m.sink`` in bulk, write few large inserts, commit after the write.

    The loop is ``streams.pausing.PausingLoop`` (the demand consumer's), writing in the
    foreground: a write takes everything fetched before it, and on failure the partitions
    are paused and the write retried with backoff. ``batch_max_messages`` and
    ``min_interval_s`` come from the settings (``create_writer_app``)."""

    def __init__(
        self,
        bootstrap: str,
        group_id: str,
        store: DemandStore,
        *,
        batch_max_messages: int,
        min_interval_s: float,
        client_config: dict[str, Any] | None = None,
        topic: str = SINK_TOPIC,
        on_fatal: Callable[[C2MError], None] | None = None,
    ) -> None:
        super().__init__()
        self._on_fatal = on_fatal
        self.bootstrap = bootstrap
        self.group_id = group_id
        self.store = store
        self.batch_max_messages = batch_max_messages
        self.min_interval_s = min_interval_s
        self.client_config = client_config or {}
        self.topic = topic
        self._io = ThreadPoolExecutor(max_workers=1, thread_name_prefix="c2m-writer")
        self._stopping = asyncio.Event()
        self.finished = asyncio.Event()
        self.health = SinkHealth(log, "ClickHouse write failed",
                                 "ClickHouse is back; wrote the backlog")
        self.pausing = PausingLoop(self, self._pause_all, self._resume_all, self._stopping,
                                   background=False)
        self.writes = 0
        self.messages_written = 0
        self.skipped = 0
        self.pending: list[tuple[FlushBatch, list[LateEvent], int]] = []
        self._pending_offsets: dict[TopicPartition, int] = {}
        self._last_write = time.monotonic()
        self._consumer: AIOKafkaConsumer | None = None

    @property
    def sink_healthy(self) -> bool:
        return self.health.healthy

    @property
    def paused(self) -> bool:
        return self.pausing.paused

    async def io(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._io, fn, *args)

    @Service.task
    async def _writing(self) -> None:
        """The service's one task. An error no retry can fix (ClickHouse refused a
        write) goes to ``on_fatal`` (the app stops, as the worker's does)."""
        await run_until_fatal(self.run, self._on_fatal)

    async def on_stop(self) -> None:
        await self.finish()

    async def finish(self, timeout_s: float = 30.0) -> None:
        """Stop fetching; the final write of what is pending and its commit, then leave
        the group."""
        self._stopping.set()
        if self._consumer is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.finished.wait(), timeout=timeout_s)

    def close(self) -> None:
        self._io.shutdown(wait=True)

    async def run(self) -> None:
        consumer = AIOKafkaConsumer(
            self.topic,
            bootstrap_servers=self.bootstrap,
            group_id=self.group_id,
            client_id=self.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_partition_fetch_bytes=64 * 1024 * 1024,
            fetch_max_bytes=64 * 1024 * 1024,
            **self.client_config,
        )
        self._consumer = consumer
        await consumer.start()
        self._last_write = time.monotonic()
        try:
            await self.pausing.run()
            if self.pending:
                await self.flush()
        finally:
            await consumer.stop()
            self.finished.set()

    # ---------------------------------------------------------------- the loop's side
    async def poll(self) -> int:
        """Fetch up to what the batch has room for (also while paused: polling keeps the
        member inside ``max_poll_interval``)."""
        consumer = self._consumer
        room = self.batch_max_messages - len(self.pending)
        if consumer is None or room <= 0:
            await asyncio.sleep(0.05)
            return 0
        fetched = await consumer.getmany(timeout_ms=100, max_records=room)
        for tp, msgs in fetched.items():
            for m in msgs:
                self._take(m)
            self._pending_offsets[tp] = msgs[-1].offset + 1
        return sum(len(msgs) for msgs in fetched.values())

    def flush_due(self, caught_up: bool) -> bool:
        """Something fetched, and the batch full or ``min_interval_s`` since the last
        write."""
        if not self.pending and not self._pending_offsets:
            return False
        full = len(self.pending) >= self.batch_max_messages
        return full or time.monotonic() - self._last_write >= self.min_interval_s

    def backlogged(self) -> bool:
        """Always: the writer writes in the foreground (``background=False``), a write in
        flight holds the next fetch, since the write takes everything pending."""
        return True

    def _pause_all(self) -> None:
        if self._consumer is not None:
            self._consumer.pause(*self._consumer.assignment())

    def _resume_all(self) -> None:
        if self._consumer is not None:
            self._consumer.resume(*self._consumer.assignment())

    def _take(self, msg: Any) -> None:
        try:
            self.pending.append(decode_flush(msg.value))
        except (ValueError, KeyError, TypeError) as exc:
            # Only workers produce here; a foreign message is skipped, never half-written.
            self.skipped += 1
            log.error("skipping c2m.sink offset %d: %s", msg.offset, type(exc).__name__)

    async def flush(self) -> bool:
        """Write everything pending (one insert per table), then commit its offsets."""
        started = time.perf_counter()
        self.health.attempt()
        try:
            for batch, late, lateness_ms in merge_flushes(self.pending):
                await self.io(self.store.write, batch, late, lateness_ms)
        except SinkRejected as exc:
            # not an outage: the same write would be refused again; nothing is committed,
            # so the messages are written once the cause is fixed and the writer restarted
            self.health.failed(exc, retrying=False)
            raise
        except SinkError as exc:
            self.health.failed(exc)
            return False
        self.health.succeeded()
        self._last_write = time.monotonic()
        metrics.FLUSH_SECONDS.observe(time.perf_counter() - started)
        metrics.SINK_WRITER_MESSAGES.inc(len(self.pending))
        self.writes += 1
        self.messages_written += len(self.pending)
        self.pending = []
        offsets, self._pending_offsets = self._pending_offsets, {}
        if offsets and self._consumer is not None:
            try:
                await self._consumer.commit(offsets)
            except KafkaError as exc:
                # Re-reading written messages is harmless: every row is idempotent.
                log.warning("c2m.sink commit failed: %s", type(exc).__name__)
        return True


@dataclass
class WriterApp(FatalStop):
    app: faust.App
    settings: Settings
    writer: SinkWriter
    store: DemandStore
    alerts: AlertService | None = None
    exit_code: int = 0


def create_writer_app(settings: Settings, bootstrap: str, client: Any | None = None) -> WriterApp:
    client = client if client is not None else connect(settings)
    store = open_store(client, settings)
    writer = SinkWriter(
        bootstrap, f"{settings.app_id}-writer", store,
        batch_max_messages=settings.writer_batch_max_messages,
        min_interval_s=settings.flush_interval_seconds,
        client_config=settings.kafka_client_config(),
        on_fatal=lambda exc: wa.fail(exc),
    )
    cfg = faust_config(settings, bootstrap) | {
        "web_host": settings.writer_host,
        "web_port": settings.writer_port,
        "web_bind": settings.writer_host,
        "datadir": str(settings.data_dir / "faust-writer"),
    }
    app = faust.App(f"{settings.app_id}-writer", **cfg)
    app.boot_strategy = BootStrategy(app, enable_kafka_consumer=False)

    @app.task  # type: ignore[untyped-decorator]
    async def metrics_server() -> None:
        if settings.metrics_port:
            start_http_server(settings.metrics_port, addr=settings.metrics_host)

    # the market fold of what the writer refreshed, the daily windows and the rolling
    # horizons: stopped after the writer's final write (services stop in reverse order),
    # with a last refresh
    attach_market_refresh(app, settings, store, writer.io)
    attach_service(app, writer)  # stopped (final write) before the producer and web server

    attach_checkpoint_pruning(app, settings, store, writer.io)

    # The writer owns ClickHouse, so with C2M_SINK=kafka it runs the alert rules (the
    # workers cannot). It does not consume the demand topics: partitions without any
    # checkpoint are waited for C2M_ALERT_IDLE_WALL_SECONDS after start, then ignored.
    alerts = attach_alerts(app, settings, client, writer.io, set, web_host=settings.writer_host)

    @app.page("/healthz")
    async def healthz(web: Any, request: Any) -> Any:
        return web.json({"status": "ok"})

    @app.page("/readyz")
    async def readyz(web: Any, request: Any) -> Any:
        body = {"sink_healthy": writer.sink_healthy, "paused": writer.paused}
        return web.json(body, status=200 if writer.sink_healthy else 503)

    @app.page("/api/stats")
    async def stats(web: Any, request: Any) -> Any:
        """What the writer has written; the ledger is summed over the stored checkpoints."""
        try:
            ledger = await writer.io(store.ledger_totals)
        except SinkError:
            ledger = {}
        return web.json(ledger | {
            "writes": writer.writes,
            "messages_written": writer.messages_written,
            "pending_messages": len(writer.pending),
            "skipped": writer.skipped,
            "sink_healthy": writer.sink_healthy,
        })

    @app.page("/api/sink/state")
    async def state(web: Any, request: Any) -> Any:
        try:
            topic = str(request.query["topic"])
            partition = int(request.query["partition"])
        except (KeyError, ValueError):
            return web.json({"error": "topic and partition required"}, status=400)
        try:
            loaded = await writer.io(
                store.load_partition, topic, partition, 2**62, settings.engine_config()
            )
        except SinkError as exc:
            return web.json({"error": type(exc).__name__}, status=503)
        return web.bytes(orjson.dumps(encode_loaded(loaded)), content_type="application/json")

    wa = WriterApp(app, settings, writer, store, alerts)
    return wa


def run_writer(settings: Settings, bootstrap: str, duration_s: float | None = None) -> None:
    """Create topics and run the writer until stopped (SIGTERM/Ctrl-C: final write)."""
    ensure_topics(bootstrap, settings.topic_partitions, settings.kafka_client_config(),
                  shared_restock=settings.shared_restock_topic,
                  alert_retention_days=settings.alert_topic_retention_days)
    from streams.runner import launch

    wa = create_writer_app(settings, bootstrap)
    try:
        launch(wa.app, settings, duration_s=duration_s)
    finally:
        wa.writer.close()
    if wa.exit_code:
        raise SystemExit(wa.exit_code)
