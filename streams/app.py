"""The Faust application: topics, the demand agent, the catalog task, the flush timer.

Faust provides the consumer group, partition assignment and rebalancing, offset commits,
the producer, the web server and the worker lifecycle. The agent consumes the three
demand topics as raw bytes in batches (``noack_take``) and hands them to the
framework-free ``DemandPipeline``, which acknowledges events only after the ClickHouse
flush that covers them: Faust commits acknowledged offsets, so a commit never runs
ahead of ClickHouse.
"""

from __future__ import annotations

import importlib.metadata
import logging
from dataclasses import dataclass, field
from typing import Any

import faust
from faust.types import TP
from prometheus_client import start_http_server

from schemas.contract import TOPIC_DEAD_LETTER, TOPIC_LOGISTICS, TOPIC_ORDERS, TOPIC_PAGEVIEWS
from streams import metrics
from streams.catalog_reader import CatalogReader
from streams.clickhouse.client import connect
from streams.clickhouse.migrations import migrate
from streams.clickhouse.store import DemandStore
from streams.core.catalog import Catalog
from streams.core.engine import DemandEngine, Record
from streams.core.pricebands import PriceBands
from streams.pipeline import DemandPipeline
from streams.settings import Settings

__version__ = importlib.metadata.version("c2m-pulse")

log = logging.getLogger(__name__)


@dataclass
class PulseApp:
    """The Faust app plus the objects the CLI, the demo and the tests need to reach."""

    app: faust.App
    settings: Settings
    bootstrap: str
    engine: DemandEngine
    store: DemandStore
    pipeline: DemandPipeline
    catalog_reader: CatalogReader
    client: Any
    extra: dict[str, Any] = field(default_factory=dict)


def _faust_broker_credentials(settings: Settings) -> Any:
    proto = settings.kafka_security_protocol
    if proto == "PLAINTEXT":
        return None
    ssl_context = settings.kafka_client_config().get("ssl_context")
    if proto == "SSL":
        return faust.SSLCredentials(ssl_context)
    secret = settings.kafka_sasl_password
    password = secret.get_secret_value() if secret else ""
    return faust.SASLCredentials(
        username=settings.kafka_sasl_username or "",
        password=password,
        ssl_context=ssl_context,
        mechanism=settings.kafka_sasl_mechanism,
    )


def faust_config(settings: Settings, bootstrap: str) -> dict[str, Any]:
    """Keyword arguments for ``faust.App`` derived from the settings (tested as a mapping)."""
    cfg: dict[str, Any] = {
        "broker": f"kafka://{bootstrap}",
        "broker_credentials": _faust_broker_credentials(settings),
        "value_serializer": "raw",
        "key_serializer": "raw",
        "topic_partitions": settings.topic_partitions,
        "topic_allow_declare": False,
        "topic_disable_leader": True,
        "consumer_auto_offset_reset": "earliest",
        "broker_commit_interval": 1.0,
        "broker_rebalance_timeout": settings.rebalance_timeout_seconds,
        "broker_session_timeout": settings.session_timeout_seconds,
        "broker_heartbeat_interval": min(3.0, settings.session_timeout_seconds / 3),
        "stream_buffer_maxsize": max(settings.batch_max_events, 1000),
        # Unflushed events are never acked until their flush; waiting for "empty" at
        # shutdown would wait for a flush. The final flush is in on_before_shutdown.
        "stream_wait_empty": False,
        "web_enabled": True,
        "web_host": settings.web_host,
        "web_port": settings.web_port,
        "web_bind": settings.web_host,
        "datadir": str(settings.data_dir / "faust"),
        "producer_acks": -1,
    }
    return cfg


def create_app(settings: Settings, bootstrap: str, client: Any | None = None) -> PulseApp:
    """Build the app. Applies ClickHouse migrations (idempotent) before anything runs."""
    client = client if client is not None else connect(settings)
    migrate(client, settings.clickhouse_database)
    engine = DemandEngine(settings.engine_config(), Catalog(PriceBands(settings.price_band_edges)))
    store = DemandStore(client, settings.clickhouse_database)
    store.record_settings({"idle_partition_ms": settings.idle_partition_seconds * 1000})

    app = faust.App(settings.app_id, **faust_config(settings, bootstrap))
    metrics.BUILD.info({"version": __version__, "app_id": settings.app_id})
    demand_topic = app.topic(
        TOPIC_ORDERS, TOPIC_PAGEVIEWS, TOPIC_LOGISTICS,
        key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw",
    )
    dead_letter_topic = app.topic(
        TOPIC_DEAD_LETTER, key_type=bytes, value_type=bytes,
        key_serializer="raw", value_serializer="raw",
    )

    async def send_dead_letter(key: bytes | None, value: bytes) -> Any:
        return await dead_letter_topic.send(key=key, value=value)

    pipeline = DemandPipeline(
        engine, store, send_dead_letter, flush_interval_s=settings.flush_interval_seconds
    )
    reader = CatalogReader(
        bootstrap, engine, pipeline.dead_letter, client_config=settings.kafka_client_config()
    )
    pulse = PulseApp(app, settings, bootstrap, engine, store, pipeline, reader, client)

    @app.task  # type: ignore[untyped-decorator]
    async def metrics_server() -> None:
        if settings.metrics_port:
            start_http_server(settings.metrics_port, addr=settings.metrics_host)
            log.info("metrics on %s:%d", settings.metrics_host, settings.metrics_port)

    @app.task  # type: ignore[untyped-decorator]
    async def catalog() -> None:
        await reader.run()

    @app.agent(demand_topic, name="c2m-demand")
    async def demand(stream: Any) -> None:
        await reader.ready.wait()
        async for events in stream.noack_take(settings.batch_max_events, within=0.2):
            records = [
                Record(
                    m.topic, m.partition, m.offset,
                    None if m.timestamp is None else int(m.timestamp * 1000),
                    m.key, m.value,
                )
                for m in (ev.message for ev in events)
            ]
            await pipeline.handle(records, events, stream.ack)

    @app.timer(interval=max(settings.flush_interval_seconds / 2, 0.1))  # type: ignore[untyped-decorator]
    async def flush_timer() -> None:
        await pipeline.flush_if_due()

    @app.on_partitions_revoked.connect  # type: ignore[arg-type]
    async def on_revoked(sender: Any, revoked: set[TP], **kwargs: Any) -> None:
        pipeline.drop_partitions([(tp.topic, tp.partition) for tp in revoked])

    @app.on_before_shutdown.connect  # type: ignore[arg-type]
    async def final_flush(sender: Any, **kwargs: Any) -> None:
        # The consumer is stopped by now: this makes the last numbers durable in
        # ClickHouse; their offsets are re-read on the next start and restored exactly.
        await pipeline.flush()

    @app.page("/healthz")
    async def healthz(web: Any, request: Any) -> Any:
        return web.json({"status": "ok"})

    @app.page("/readyz")
    async def readyz(web: Any, request: Any) -> Any:
        ready = reader.ready.is_set() and pipeline.sink_healthy
        body = {"catalog_ready": reader.ready.is_set(), "sink_healthy": pipeline.sink_healthy}
        return web.json(body, status=200 if ready else 503)

    @app.page("/api/stats")
    async def stats(web: Any, request: Any) -> Any:
        return web.json(ledger_totals(engine) | {"catalog_skus": len(engine.catalog)})

    pulse.extra["agent"] = demand
    return pulse


def ledger_totals(engine: DemandEngine) -> dict[str, int]:
    """Ledger counters summed over all partitions this process holds."""
    keys = ("consumed", "processed", "dead_lettered", "duplicates", "late", "corrected",
            "unknown_sku_lines")
    out = dict.fromkeys(keys, 0)
    for st in engine.states.values():
        for k in keys:
            out[k] += getattr(st.ledger, k)
    return out
