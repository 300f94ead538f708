"""``c2m writer``: the single process that owns ClickHouse when workers use ``C2M_SINK=kafka``.

Embedded chDB allows one process per engine path, so with several workers only this
process opens it. It is a Faust app like the worker (signals, graceful stop, web server)
with one task: a bulk aiokafka consumer of ``c2m.sink`` (group ``<C2M_APP_ID>-writer``)
that merges everything it fetched into one batch, writes it with one insert per table
(checkpoints last, ``DemandStore.write``), and only then commits the ``c2m.sink`` offsets.
A failed write pauses the consumer and is retried with capped exponential backoff.

Its web server (``C2M_WRITER_HOST``:``C2M_WRITER_PORT``, loopback by default) serves
``/api/sink/state?topic=&partition=``: the latest checkpointed state of a source
partition, which workers restore from on assignment (``streams.kafka.sink``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
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
from prometheus_client import start_http_server

from streams import metrics
from streams.alerting import AlertService
from streams.backoff import Backoff
from streams.clickhouse.client import connect
from streams.clickhouse.store import DemandStore
from streams.core.engine import FlushBatch, LateEvent
from streams.errors import SinkError
from streams.kafka.topics import ensure_topics
from streams.settings import Settings
from streams.sink import SINK_TOPIC, decode_flush, encode_loaded, merge_flushes

log = logging.getLogger(__name__)
T = TypeVar("T")


class SinkWriter:
    """Consume ``c2m.sink`` in bulk, write few large inserts, commit after the write."""

    def __init__(
        self,
        bootstrap: str,
        group_id: str,
        store: DemandStore,
        *,
        batch_max_messages: int = 500,
        min_interval_s: float = 1.0,
        client_config: dict[str, Any] | None = None,
        topic: str = SINK_TOPIC,
    ) -> None:
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
        self.sink_healthy = True
        self.paused = False
        self.writes = 0
        self.messages_written = 0
        self.skipped = 0
        self.pending: list[tuple[FlushBatch, list[LateEvent], int]] = []
        self._pending_offsets: dict[TopicPartition, int] = {}
        self._consumer: AIOKafkaConsumer | None = None

    async def io(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._io, fn, *args)

    async def stop(self, timeout_s: float = 30.0) -> None:
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
        try:
            await self._loop(consumer)
            if self.pending:
                await self._write(consumer)
        finally:
            await consumer.stop()
            self.finished.set()

    async def _loop(self, consumer: AIOKafkaConsumer) -> None:
        backoff = Backoff()
        last_write = time.monotonic()
        while not self._stopping.is_set():
            room = self.batch_max_messages - len(self.pending)
            if room > 0:
                # also while paused: polling keeps the member inside max_poll_interval
                fetched = await consumer.getmany(timeout_ms=100, max_records=room)
                for tp, msgs in fetched.items():
                    for m in msgs:
                        self._take(m)
                    self._pending_offsets[tp] = msgs[-1].offset + 1
            else:
                await asyncio.sleep(0.05)
            if not self.pending and not self._pending_offsets:
                continue
            full = len(self.pending) >= self.batch_max_messages
            if not full and not self.paused and time.monotonic() - last_write < self.min_interval_s:
                continue
            if await self._write(consumer):
                last_write = time.monotonic()
                backoff.reset()
                if self.paused:
                    consumer.resume(*consumer.assignment())
                    self.paused = False
                continue
            if not self.paused:
                consumer.pause(*consumer.assignment())
                self.paused = True
            await backoff.wait(self._stopping)

    def _take(self, msg: Any) -> None:
        try:
            self.pending.append(decode_flush(msg.value))
        except (ValueError, KeyError, TypeError) as exc:
            # Only workers produce here; a foreign message is skipped, never half-written.
            self.skipped += 1
            log.error("skipping c2m.sink offset %d: %s", msg.offset, type(exc).__name__)

    async def _write(self, consumer: AIOKafkaConsumer) -> bool:
        started = time.perf_counter()
        try:
            for batch, late, lateness_ms in merge_flushes(self.pending):
                await self.io(self.store.write, batch, late, lateness_ms)
        except SinkError as exc:
            if self.sink_healthy:
                log.warning("ClickHouse write failed, will retry: %s", exc)
            self.sink_healthy = False
            metrics.SINK_HEALTHY.set(0)
            metrics.FLUSH_RETRIES.inc()
            return False
        if not self.sink_healthy:
            log.warning("ClickHouse is back; wrote the backlog")
        self.sink_healthy = True
        metrics.SINK_HEALTHY.set(1)
        metrics.FLUSH_SECONDS.observe(time.perf_counter() - started)
        metrics.SINK_WRITER_MESSAGES.inc(len(self.pending))
        self.writes += 1
        self.messages_written += len(self.pending)
        self.pending = []
        offsets, self._pending_offsets = self._pending_offsets, {}
        if offsets:
            try:
                await consumer.commit(offsets)
            except KafkaError as exc:
                # Re-reading written messages is harmless: every row is idempotent.
                log.warning("c2m.sink commit failed: %s", type(exc).__name__)
        return True


@dataclass
class WriterApp:
    app: faust.App
    settings: Settings
    writer: SinkWriter
    store: DemandStore
    alerts: AlertService | None = None


def create_writer_app(settings: Settings, bootstrap: str, client: Any | None = None) -> WriterApp:
    from streams.app import attach_alerts, attach_checkpoint_pruning, faust_config, open_store

    client = client if client is not None else connect(settings)
    store = open_store(client, settings)
    writer = SinkWriter(
        bootstrap, f"{settings.app_id}-writer", store,
        batch_max_messages=settings.writer_batch_max_messages,
        min_interval_s=settings.flush_interval_seconds,
        client_config=settings.kafka_client_config(),
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

    @app.task  # type: ignore[untyped-decorator]
    async def consume() -> None:
        await writer.run()

    attach_checkpoint_pruning(app, settings, store, writer.io)

    # The writer owns ClickHouse, so with C2M_SINK=kafka it runs the alert rules (the
    # workers cannot). It does not consume the demand topics: partitions without any
    # checkpoint are waited for C2M_ALERT_IDLE_WALL_SECONDS after start, then ignored.
    alerts = attach_alerts(app, settings, client, writer.io, set)

    @app.on_before_shutdown.connect  # type: ignore[arg-type]
    async def final_write(sender: Any, **kwargs: Any) -> None:
        await writer.stop()

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

    return WriterApp(app, settings, writer, store, alerts)


def run_writer(settings: Settings, bootstrap: str, duration_s: float | None = None) -> None:
    """Create topics and run the writer until stopped (SIGTERM/Ctrl-C: final write)."""
    ensure_topics(bootstrap, settings.topic_partitions, settings.kafka_client_config(),
                  shared_restock=settings.shared_restock_topic,
                  alert_retention_days=settings.alert_topic_retention_days)
    wa = create_writer_app(settings, bootstrap)
    if duration_s is not None:

        async def stop_later() -> None:
            await asyncio.sleep(duration_s)
            os.kill(os.getpid(), signal.SIGTERM)

        wa.app.task(stop_later)
    worker = faust.Worker(wa.app, loglevel=settings.log_level.upper(), quiet=True)
    try:
        worker.execute_from_commandline()
    except SystemExit as exc:
        if exc.code not in (0, None):
            raise
    finally:
        wa.writer.close()
