"""The Faust application: the worker lifecycle, the producer, the web server, the demand
agent, the services and timers.

Faust runs the worker (signals, graceful stop), the producer (dead letters), the web
server (health, readiness, stats, the web view), the demand agent (record batches ->
the pipeline), the catalog reader, the alert service and the demand consumer as
``mode.Service``s, and the timers (consumer lag, alert ticks). The demand consumer
(``streams.ingest``) reads the demand topics in bulk below Faust's per-event stream
machinery, in consumer group ``C2M_APP_ID``, hands each batch to the demand agent and
commits offsets only after the ClickHouse flush that covers them.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import logging
import math
import os
import signal
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import faust
from faust.app.base import BootStrategy
from mode import Service
from prometheus_client import start_http_server

from schemas.contract import TOPIC_DEAD_LETTER, TOPIC_ORDERS
from streams import metrics
from streams.alerting import AlertService
from streams.brief import with_moq
from streams.catalog_reader import CatalogReader
from streams.clickhouse import market
from streams.clickhouse.alerts import AlertStore
from streams.clickhouse.client import connect
from streams.clickhouse.errors import sink_error
from streams.clickhouse.migrations import database_timezone, migrate
from streams.clickhouse.retention import apply_retention, settings_ttls
from streams.clickhouse.store import DemandStore
from streams.clickhouse.views import BadRequest, int_arg, text_arg
from streams.core.catalog import Catalog
from streams.core.engine import DemandEngine, Run
from streams.core.forecast import ForecastConfig
from streams.core.pricebands import PriceBands
from streams.core.tokens import Scope, Unauthorized
from streams.errors import C2MError, ConfigError, SinkError
from streams.ingest import DemandConsumer
from streams.kafka.sink import KafkaSink
from streams.kafka.topics import FactoryTopics
from streams.market_refresh import MarketRefresher
from streams.pipeline import DemandPipeline
from streams.settings import Settings, mask_url
from streams.sink import Sink
from streams.web import is_loopback, register_web_view
from streams.web.auth import WebAuth, forbidden, unauthorized

__version__ = importlib.metadata.version("c2m-pulse")

log = logging.getLogger(__name__)

#: The demand partition whose owner runs the alert rules among consuming workers.
ALERT_LEADER_PARTITION: tuple[str, int] = (TOPIC_ORDERS, 0)


def ensure_data_dir(settings: Settings) -> None:
    """Create C2M_DATA_DIR (the embedded stack's ClickHouse, broker log and Faust data);
    one line naming the setting when it cannot be (a file in the way, no permission)."""
    try:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"C2M_DATA_DIR={str(settings.data_dir)!r}: cannot create the data "
                          f"directory ({exc.strerror or exc})") from None


def stop_process() -> None:
    """Stop this process as SIGTERM or Ctrl-C does: Faust's signal handlers stop every
    service of the app cleanly (the one way the worker and the writer stop themselves)."""
    os.kill(os.getpid(), signal.SIGTERM)


class FatalStop:
    """What the worker's and the writer's apps share: stop for an error that retrying
    cannot fix, then exit with its code."""

    #: set by ``fail``: the exit code the process ends with (0 = a normal stop)
    exit_code: int

    def fail(self, exc: C2MError) -> None:
        """Stop the process for an error that retrying cannot fix: one line in the log,
        a graceful stop (the same path as SIGTERM), then ``exc.exit_code``."""
        if self.exit_code:
            return
        self.exit_code = exc.exit_code
        log.error("stopping: %s", exc)
        stop_process()


@dataclass
class PulseApp(FatalStop):
    """The Faust app plus the objects the CLI, the demo and the tests need to reach."""

    app: faust.App
    settings: Settings
    bootstrap: str
    engine: DemandEngine
    store: DemandStore | None  # None when flushes go through c2m.sink (C2M_SINK=kafka)
    pipeline: DemandPipeline
    catalog_reader: CatalogReader
    ingest: DemandConsumer
    client: Any
    alerts: AlertService | None
    exit_code: int = 0
    #: the database held a previous run's data and was reset (embedded broker)
    database_reset: bool = False

    def direct_store(self) -> DemandStore:
        """The ClickHouse store of a direct-write worker (the demo's and the CLI's)."""
        if self.store is None:
            raise ConfigError("this worker writes through c2m.sink (C2M_SINK=kafka); "
                              "query the `c2m writer`'s ClickHouse instead")
        return self.store


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
    return {
        "broker": f"kafka://{bootstrap}",
        "broker_credentials": _faust_broker_credentials(settings),
        "value_serializer": "raw",
        "key_serializer": "raw",
        "topic_partitions": settings.topic_partitions,
        "topic_allow_declare": False,
        "topic_disable_leader": True,
        "web_enabled": True,
        "web_host": settings.web_host,
        "web_port": settings.web_port,
        "web_bind": settings.web_host,
        "datadir": str(settings.data_dir / "faust"),
        "producer_acks": -1,
        "producer_compression_type": (
            None if settings.kafka_compression == "none" else settings.kafka_compression
        ),
    }


def reset_database(client: Any, settings: Settings) -> bool:
    """Drop the database when it holds checkpoints, or was built in another time zone:
    for a worker on the embedded broker, which starts empty every time (memory storage),
    so checkpoints in ClickHouse are of a log that is gone and would make the consumer
    skip the new one, and nothing in it is of the new log (a demo run before in another
    C2M_TIMEZONE would otherwise refuse this one). True if it did."""
    db = settings.clickhouse_database
    try:
        exists = client.query(
            "SELECT count() FROM system.tables WHERE database = {d:String} "
            "AND name = 'checkpoints'", parameters={"d": db}).result_rows[0][0]
        if exists and (
            client.query(f"SELECT count() > 0 FROM {db}.checkpoints").result_rows[0][0]  # noqa: S608
            or _zone_or_none(client, db) not in (None, settings.timezone)
        ):
            client.command(f"DROP DATABASE {db} SYNC")
            log.info("embedded broker: it starts empty, so database %s was reset", db)
            return True
    except Exception as exc:
        raise sink_error(exc, "reset", db) from exc
    return False


def _zone_or_none(client: Any, db: str) -> str | None:
    """The database's zone; None when it cannot tell (a database from before 0007 has no
    database_info: ``migrate`` decides then)."""
    try:
        return database_timezone(client, db)
    except Exception:
        return None


def open_store(client: Any, settings: Settings) -> DemandStore:
    """Bring the database up to date (migrations, retention TTLs, the settings the views
    read) and return the store on it. Every process that writes ClickHouse does this."""
    migrate(client, settings.clickhouse_database, timezone=settings.timezone)
    apply_retention(client, settings.clickhouse_database, settings_ttls(settings))
    store = DemandStore(client, settings.clickhouse_database, settings.calendar())
    store.record_settings(settings.view_settings())
    # the stored market fold is for one k: refold it when C2M_MIN_SHOPS_PER_SIGNAL changed
    market.ensure_k(client, settings.clickhouse_database)
    return store


def attach_market_refresh(
    app: faust.App, settings: Settings, store: DemandStore, io: Callable[..., Awaitable[Any]],
    leader: Callable[[], bool] | None = None, flushes: Callable[[], int] | None = None,
) -> MarketRefresher:
    """In the process that writes ClickHouse: the market fold of what its store refreshed
    and, on the leader, of the daily windows and the rolling horizons, every
    ``C2M_MARKET_REFRESH_SECONDS`` (``streams.market_refresh``). Attach it before the
    service that flushes, so that it stops after it (a last refresh)."""
    refresher = MarketRefresher(
        store.client, settings.clickhouse_database, io, leader=leader, flushes=flushes,
        pending=store.market_pending,
        short_sizes=[s for s in settings.window_seconds if s < market.DAILY_SECONDS],
        # the SKU days: folded by the process that evaluates the alerts (one per database)
        days=(math.ceil(settings.correction_horizon_hours * 3_600_000), store.calendar)
        if settings.alerts_enabled else None)
    attach_service(app, refresher)

    @app.timer(interval=settings.market_refresh_seconds)  # type: ignore[untyped-decorator]
    async def market_ticks() -> None:
        await refresher.refresh()

    return refresher


def attach_checkpoint_pruning(
    app: faust.App, settings: Settings, store: DemandStore, io: Callable[..., Awaitable[Any]],
    interval_s: float = 3600.0,
) -> None:
    """Once at start (a task) and then every ``interval_s`` (a timer), in the process that
    writes ClickHouse: delete the superseded checkpoints older than
    ``C2M_RETENTION_CHECKPOINT_DAYS``."""

    async def prune() -> None:
        try:
            await io(store.prune_checkpoints, settings.retention_checkpoint_days)
        except SinkError as exc:
            log.warning("checkpoint pruning deferred: %s", exc)

    @app.task  # type: ignore[untyped-decorator]
    async def prune_checkpoints_at_start() -> None:
        await prune()

    @app.timer(interval=interval_s)  # type: ignore[untyped-decorator]
    async def prune_checkpoints() -> None:
        await prune()


def create_app(
    settings: Settings, bootstrap: str, client: Any | None = None, *, fresh_log: bool = False
) -> PulseApp:
    """Build the app. Applies ClickHouse migrations (idempotent) before anything runs.

    With ``C2M_SINK=kafka`` the worker never opens ClickHouse: flushes go to ``c2m.sink``
    and the ``c2m writer`` process (which migrates) owns the database. ``fresh_log``: the
    broker starts empty (the embedded one): a database with checkpoints is reset first.
    """
    ensure_data_dir(settings)  # Faust's datadir lives in it
    engine = DemandEngine(settings.engine_config(), Catalog(PriceBands(settings.price_band_edges)))
    store: DemandStore | None = None
    sink: Sink | None = None
    was_reset = False
    if settings.sink == "kafka":
        sink = KafkaSink(
            bootstrap, settings.writer_url, client_config=settings.kafka_producer_config(),
            fault_file=settings.clickhouse_fault_file,
        )
    else:
        client = client if client is not None else connect(settings)
        was_reset = fresh_log and reset_database(client, settings)
        store = open_store(client, settings)

    app = faust.App(settings.app_id, **faust_config(settings, bootstrap))
    # The demand topics are consumed by our bulk consumer (streams.ingest), in the consumer
    # group C2M_APP_ID; Faust's own per-event consumer is not started.
    app.boot_strategy = BootStrategy(app, enable_kafka_consumer=False)
    metrics.BUILD.info({"version": __version__, "app_id": settings.app_id})
    dead_letter_topic = app.topic(
        TOPIC_DEAD_LETTER, key_type=bytes, value_type=bytes,
        key_serializer="raw", value_serializer="raw",
    )

    async def send_dead_letter(key: bytes | None, value: bytes) -> Any:
        return await dead_letter_topic.send(key=key, value=value)

    pipeline = DemandPipeline(
        engine, store, send_dead_letter, flush_interval_s=settings.flush_interval_seconds,
        max_pending_events=settings.flush_max_pending_events,
        eager_events=settings.flush_eager_events,
        publish_max_lag_s=settings.flush_publish_max_lag_seconds, sink=sink,
    )
    reader = CatalogReader(bootstrap, pipeline, client_config=settings.kafka_client_config())
    apply_runs = attach_demand_agent(app, pipeline)
    ingest = DemandConsumer(
        bootstrap, settings.app_id, pipeline,
        batch_max_events=settings.batch_max_events,
        rebalance_timeout_s=settings.rebalance_timeout_seconds,
        session_timeout_s=settings.session_timeout_seconds,
        client_config=settings.kafka_client_config(),
        # no demand event is mapped before the catalog has been read to its end
        start_after=reader.ready,
        on_fatal=lambda exc: pulse.fail(exc),
        apply=apply_runs,
    )

    def demand_partitions() -> set[tuple[str, int]]:
        consumer = ingest.consumer
        if consumer is None:
            return set()
        return {
            (t, p) for t in ingest.topics for p in (consumer.partitions_for_topic(t) or ())
        }

    # Alerts run where ClickHouse is: here with the direct sink, in `c2m writer` otherwise.
    # Several workers on one ClickHouse would each publish every alert: among consuming
    # workers, the one that owns the leader partition evaluates (the group decides it, a
    # rebalance moves it). An alerts-only process (C2M_INGEST_ENABLED=false) always does.
    leader = (lambda: ALERT_LEADER_PARTITION in ingest.owned) if settings.ingest_enabled else None
    alerts = attach_alerts(
        app, settings, client if store is not None else None, pipeline.io,
        demand_partitions, reader.ready, leader,
    )
    pulse: PulseApp = PulseApp(
        app, settings, bootstrap, engine, store, pipeline, reader, ingest, client, alerts
    )
    pulse.database_reset = was_reset

    @app.task  # type: ignore[untyped-decorator]
    async def metrics_server() -> None:
        if settings.metrics_port:
            start_http_server(settings.metrics_port, addr=settings.metrics_host)
            log.info("metrics on %s:%d", settings.metrics_host, settings.metrics_port)

    attach_service(app, reader)

    if store is not None:
        attach_checkpoint_pruning(app, settings, store, pipeline.io)
    refresher = (
        attach_market_refresh(app, settings, store, pipeline.io, leader,
                              lambda: pipeline.published_flushes)
        if store is not None else None
    )

    @app.timer(interval=settings.lag_interval_seconds)  # type: ignore[untyped-decorator]
    async def consumer_lag() -> None:
        await ingest.report_lag()

    if settings.ingest_enabled:
        # Attached last, so stopped first (SIGTERM): it stops consuming, flushes the last
        # numbers and commits their offsets while the producer (dead letters), the
        # catalog reader and the alert service still run.
        attach_service(app, ingest)

    @app.page("/healthz")
    async def healthz(web: Any, request: Any) -> Any:
        return web.json({"status": "ok"})

    @app.page("/readyz")
    async def readyz(web: Any, request: Any) -> Any:
        body = {
            "catalog_ready": reader.ready.is_set(),
            "partitions_assigned": ingest.assigned.is_set(),
            "sink_healthy": pipeline.sink_healthy,
            "paused": ingest.paused,
            # assigned partitions not fetched now (all of them while the sink is failing)
            "partitions_paused": len(ingest.consumer.paused()) if ingest.consumer else 0,
            "partitions_assigned_count": (
                len(ingest.consumer.assignment()) if ingest.consumer else 0
            ),
            # partitions stopped until an operator acts (the others go on)
            "stopped_partitions": [s.as_dict() for s in ingest.stopped.values()],
        }
        ready = body["catalog_ready"] and body["sink_healthy"] and not ingest.stopped
        return web.json(body, status=200 if ready else 503)

    @app.page("/api/stats")
    async def stats(web: Any, request: Any) -> Any:
        return web.json(
            ledger_totals(engine)
            | {
                "catalog_skus": len(engine.catalog),
                "flushes": pipeline.flushes,
                "pending_events": pipeline.uncommitted_events,
                "alert_hours_evaluated": alerts.hours_evaluated if alerts else 0,
                "alert_last_hour": alerts.last_hour if alerts else None,
                "alert_leader": bool(alerts and settings.alerts_enabled and alerts.leading),
                # flushes whose daily and rolling market folds are not refreshed yet
                "market_flushes_behind": (
                    pipeline.published_flushes - refresher.flushes_covered
                    if refresher else None),
                "stopped_partitions": [s.as_dict() for s in ingest.stopped.values()],
            }
        )

    register_web_view(app, pulse)  # /view and /api/view/{name}
    return pulse


def attach_alerts(
    app: faust.App,
    settings: Settings,
    client: Any | None,
    io: Callable[..., Awaitable[Any]],
    expected_partitions: Callable[[], set[tuple[str, int]]],
    ready: asyncio.Event | None = None,
    leader: Callable[[], bool] | None = None,
    web_host: str | None = None,
) -> AlertService | None:
    """The alert service of the process that owns ClickHouse (``client``): the factory
    topics, the evaluation task, ``/api/alerts`` and ``/api/brief``. Without a client
    (a worker writing through ``c2m.sink``) the pages answer 503: ask the writer.
    ``web_host``: the address the app's web server listens on (default C2M_WEB_HOST)."""
    alert_topics: dict[str, Any] = {}

    async def publish_alert(topic: str, key: bytes, value: bytes) -> Any:
        # the shared topics, and each factory's own topic (created by FactoryTopics first)
        t = alert_topics.get(topic)
        if t is None:
            t = alert_topics[topic] = app.topic(
                topic, key_type=bytes, value_type=bytes, key_serializer="raw",
                value_serializer="raw",
            )
        return await t.send(key=key, value=value)

    factory_topics = FactoryTopics(
        broker_bootstrap(app), settings.factory_topic_partitions,
        settings.alert_topic_retention_days, settings.kafka_client_config(),
    )

    alert_store = AlertStore(client, settings.clickhouse_database) if client is not None else None
    alerts = (
        AlertService(
            alert_store, publish_alert, io, settings.alert_config(),
            expected_partitions=expected_partitions,
            idle_ms=settings.idle_partition_seconds * 1000,
            idle_wall_s=settings.alert_idle_wall_seconds,
            leader=leader,
            calendar=settings.calendar(),
            factory_topic=factory_topics.ensure,
            shared_restock=settings.shared_restock_topic,
            promotions=settings.promotions(),
            forecast=ForecastConfig(),
            ready=ready,
            evaluate_at_start=settings.alerts_enabled,
            # rounded up: a later bound could take an hour still open for final
            settled_horizon_s=math.ceil(settings.correction_horizon_hours * 3600),
            resolved_keep_s=settings.retention_resolved_alert_days * 86_400 or None,
        )
        if alert_store is not None
        else None
    )

    if alerts is not None:
        attach_service(app, alerts)
        if settings.alerts_enabled:

            # the first evaluation runs as soon as the service started (evaluate_at_start)
            @app.timer(interval=settings.alert_interval_seconds)  # type: ignore[untyped-decorator]
            async def alert_ticks() -> None:
                await alerts.catch_up()  # nothing before the worker's catalog is read

    def unavailable(web: Any) -> Any:
        return web.json(
            {"error": "this worker writes through c2m.sink: ask the c2m writer"}, status=503
        )

    auth = WebAuth(settings, web_host)
    clickhouse = mask_url(settings.effective_clickhouse_url)

    @app.page("/api/alerts")
    async def api_alerts(web: Any, request: Any) -> Any:
        if alert_store is None:
            return unavailable(web)
        try:
            scope = auth.scope(request)
        except Unauthorized as exc:
            return unauthorized(web, str(exc))
        try:
            factory = scoped_factory(scope, request.query.getall("factory", []))
        except PermissionError as exc:
            return forbidden(web, str(exc))
        flag = request.query.get("all", "").strip().lower()
        if flag not in ("", "0", "false", "no", "1", "true", "yes"):
            return web.json({"error": "all must be true or false"}, status=400)
        open_only = flag in ("", "0", "false", "no")
        rows = await io(alert_store.alerts, factory, open_only, 200, scope.kind == "market")
        return web.json({"alerts": rows})

    @app.page("/api/brief")
    async def api_brief(web: Any, request: Any) -> Any:
        if alert_store is None:
            return unavailable(web)
        try:
            scope = auth.scope(request)
        except Unauthorized as exc:
            return unauthorized(web, str(exc))
        if scope.kind == "market":
            return unauthorized(web, "the production brief is per factory: send a factory "
                                     "token")
        try:
            factory = scoped_factory(scope, request.query.getall("factory", []))
        except PermissionError as exc:
            return forbidden(web, str(exc))
        try:  # the same checks as /api/view/brief
            days = int_arg(request.query, "days", 14, 1, 365)
            run_days = int_arg(request.query, "run_days", 30, 1, 365)
            category = text_arg(request.query, "category", 128)
        except BadRequest as exc:
            return web.json({"error": str(exc)}, status=400)
        rows = await io(with_moq, alert_store, category, factory, days, run_days)
        body: dict[str, Any] = {"rows": jsonable(rows)}
        if is_loopback(getattr(request, "remote", None)):
            # which ClickHouse answered (masked), for `c2m brief` on this machine: the one
            # of its folder, not another folder's demo on the same port
            body["clickhouse"] = clickhouse
        return web.json(body)

    return alerts


def attach_demand_agent(
    app: faust.App, pipeline: DemandPipeline
) -> Callable[[Sequence[Run], int | None], Awaitable[None]]:
    """The demand agent: a Faust agent over an in-memory channel of record batches (the
    runs of one ``getmany``), which applies each batch to the pipeline. Returns what the
    demand consumer calls with a batch: it sends the batch to the channel and returns
    once the agent has applied it (or raises what applying raised), so a batch is applied
    before the next is fetched, in order, as the consumer's seeks and rebalances expect
    (one batch is thousands of records: the hand-off costs microseconds a batch,
    bench/RESULTS.md)."""
    batches = app.channel(maxsize=1)

    @app.agent(batches, name="c2m.demand")
    async def demand(stream: Any) -> None:
        async for runs, oldest_ts_ms, applied in stream:
            try:
                await pipeline.handle_runs(runs, oldest_ts_ms)
            except asyncio.CancelledError:
                applied.cancel()
                raise
            except Exception as exc:  # the consumer's poll raises it
                if not applied.done():
                    applied.set_exception(exc)
            else:
                if not applied.done():
                    applied.set_result(None)

    async def apply(runs: Sequence[Run], oldest_ts_ms: int | None) -> None:
        if not batches.subscriber_count:  # before the agent's stream subscribed
            await app.agents.wait_until_agents_started()
            if not batches.subscriber_count:  # a send would reach nobody
                raise C2MError("the demand agent is not running")
        # Faust suspends its channels' queues until its own Kafka consumer is assigned
        # partitions; that consumer is not started here (the demand consumer is ours)
        if not app.flow_control.is_active():
            app.flow_control.resume()
        applied: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        await batches.send(value=(runs, oldest_ts_ms, applied))
        await applied

    return apply


def scoped_factory(scope: Scope, asked: list[str]) -> str:
    """The factory a request may read: the operator any one it asks for (or all: ''), a
    factory token only its own (asking for another is refused, not answered empty), the
    market none. PermissionError when the request asks for more than its scope."""
    if len(asked) > 1:
        raise PermissionError("give factory at most once")
    want = asked[0] if asked else ""
    if scope.kind == "operator":
        return want[:128]
    if scope.kind == "factory":
        if want and want != scope.factory:
            raise PermissionError("this token is for another factory")
        return scope.factory
    if want:
        raise PermissionError("factory alerts need that factory's token")
    return ""


def broker_bootstrap(app: faust.App) -> str:
    """``host:port[,...]`` of the app's broker URLs (``kafka://host:port``)."""
    return ",".join(f"{u.host}:{u.port}" for u in app.conf.broker)


def attach_service(app: faust.App, service: Service) -> None:
    """Start ``service`` with the app and stop it with the app, as ``@app.service`` does
    for a service class: after the app's producer, web server and tasks are started, and
    stopped before them (Faust's ``on_init_extra_service`` takes an instance as well)."""
    app.service(service)  # type: ignore[arg-type]  # typed for classes, takes instances


def jsonable(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """ClickHouse rows with datetimes as RFC 3339 UTC strings and NaN/inf as null.
    (DateTime columns come back naive in UTC, or aware when the column has a zone, e.g.
    the brief's local days.)"""
    import math
    from datetime import UTC, datetime

    def conv(v: Any) -> Any:
        if isinstance(v, datetime):
            return (v.astimezone(UTC) if v.tzinfo else v).strftime("%Y-%m-%dT%H:%M:%SZ")
        if isinstance(v, float) and not math.isfinite(v):
            return None
        return v

    return [{k: conv(v) for k, v in r.items()} for r in rows]


def ledger_totals(engine: DemandEngine) -> dict[str, int]:
    """Ledger counters summed over all partitions this process holds."""
    keys = ("consumed", "processed", "dead_lettered", "duplicates", "late", "corrected",
            "unknown_sku_lines")
    out = dict.fromkeys(keys, 0)
    for st in engine.states.values():
        for k in keys:
            out[k] += getattr(st.ledger, k)
    return out
