"""Running the Faust worker from our CLI: logging, the optional embedded broker, topics."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import gc
import json
import logging
import socket
import time
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

import faust

from streams.app import PulseApp, create_app, ensure_data_dir, stop_process
from streams.errors import C2MError, ConfigError
from streams.kafka.embedded import EmbeddedBroker
from streams.kafka.topics import ensure_topics
from streams.settings import Settings

log = logging.getLogger(__name__)

#: Loggers that format debug messages on hot paths even when not shown.
_NOISY = ("aiokafka", "faust", "mode", "kafka", "clickhouse_connect")


#: Kafka client loggers that repeat one connection error many times a second while a
#: broker is away ("Unable connect to node", "Connection failed")
_REPEATING = ("kafka", "aiokafka")


class RepeatFilter(logging.Filter):
    """Lets each message template of the Kafka client loggers through at most once per
    ``interval_s``; the next one that passes says how many were held back."""

    def __init__(self, interval_s: float = 60.0, prefixes: tuple[str, ...] = _REPEATING):
        super().__init__()
        self.interval_s = interval_s
        self.prefixes = prefixes
        self._last: dict[tuple[str, str], float] = {}
        self._held: dict[tuple[str, str], int] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        name = record.name
        if not any(name == p or name.startswith(p + ".") for p in self.prefixes):
            return True
        key = (name, str(record.msg))
        now = time.monotonic()
        if now - self._last.get(key, -1e18) < self.interval_s:
            self._held[key] = self._held.get(key, 0) + 1
            return False
        self._last[key] = now
        held = self._held.pop(key, 0)
        if held:
            record.msg = f"{record.msg} (and {held} more like it in the last " \
                         f"{self.interval_s:.0f} s)"
        return True


def configure_logging(level: str) -> None:
    fmt = "%(asctime)s %(levelname)s %(name)s %(message)s"
    logging.basicConfig(level=level.upper(), format=fmt)
    for name in _NOISY:
        logging.getLogger(name).setLevel(max(logging.WARNING, logging.getLevelName(level.upper())))
    if level.lower() != "debug":
        for handler in logging.getLogger().handlers:
            if not any(isinstance(f, RepeatFilter) for f in handler.filters):
                handler.addFilter(RepeatFilter())


@contextlib.contextmanager
def kafka_bootstrap(settings: Settings) -> Iterator[str]:
    """The configured bootstrap servers, or an embedded broker for the duration."""
    if settings.kafka_bootstrap:
        yield settings.kafka_bootstrap
        return
    ensure_data_dir(settings)
    marker = settings.data_dir / EMBEDDED_MARKER
    with EmbeddedBroker(log_path=settings.data_dir / "broker.log") as broker:
        log.info("started embedded Kafka broker (Tansu) on %s", broker.bootstrap)
        # Other commands (`c2m alerts tail`) find the running embedded stack through this.
        ours = json.dumps({"bootstrap": broker.bootstrap, "web_port": settings.web_port})
        marker.write_text(ours)
        try:
            yield broker.bootstrap
        finally:
            with contextlib.suppress(OSError):
                if marker.read_text() == ours:  # not another run's
                    marker.unlink()


EMBEDDED_MARKER = "embedded.json"


def check_can_start(settings: Settings, ports: dict[str, tuple[str, int]]) -> None:
    """Before a demo, worker or writer starts anything: not a second one on the same data
    directory (the embedded ClickHouse allows one process), and its ports free (``ports``:
    variable -> (host, port); port 0 = disabled). One line instead of a traceback."""
    from streams.clickhouse.client import RunningHere, chdb_held, chdb_path

    chdb = chdb_path(settings)
    # first, so that a second demo in a folder hears that, not that a port is in use (the
    # lock needs no answer from the running one, which may be too busy to give one soon)
    if chdb is not None and (chdb_held(chdb) or _running_here(settings)):
        raise RunningHere(chdb)
    for variable, (host, port) in ports.items():
        if not port:
            continue
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as aiohttp binds
            try:
                sock.bind((host, port))
            except OSError as exc:
                why = exc.strerror or str(exc)
                if exc.errno == errno.EADDRINUSE:
                    raise ConfigError(
                        f"{variable}={port}: {host}:{port} is in use ({why}), by another c2m "
                        f"demo or worker? stop it, or set {variable} to a free port"
                    ) from None
                # a name that does not resolve, an address not on this machine, no permission
                host_variable = variable.removesuffix("_PORT") + "_HOST"
                raise ConfigError(
                    f"cannot listen on {host}:{port} ({why}): check {host_variable} (an "
                    f"address of this machine, e.g. 127.0.0.1) and {variable}"
                ) from None


def _running_here(settings: Settings) -> bool:
    """A demo or worker of this data directory answers on the port its marker names (and
    says it holds this ClickHouse: a stale marker's port may be another folder's demo).
    For the moment before it opens its ClickHouse (its lock: ``chdb_held``)."""
    from streams.query import query_worker, worker_url
    from streams.settings import mask_url

    if not (settings.data_dir / EMBEDDED_MARKER).exists():
        return False
    try:
        got = query_worker(worker_url(settings), "SELECT 1", timeout=5)
    except C2MError:
        return True  # a c2m worker answered, but not with a result: it is there
    return got is not None and got.clickhouse == mask_url(settings.effective_clickhouse_url)


def running_web_port(settings: Settings) -> int:
    """The web port of the demo/worker running on this data directory (from the embedded
    stack's marker), else C2M_WEB_PORT."""
    try:
        return int(json.loads((settings.data_dir / EMBEDDED_MARKER).read_text())["web_port"])
    except (OSError, ValueError, KeyError, TypeError):
        return settings.web_port


def running_bootstrap(settings: Settings) -> str | None:
    """C2M_KAFKA_BOOTSTRAP, or the embedded broker of a running `c2m demo`/worker."""
    if settings.kafka_bootstrap:
        return settings.kafka_bootstrap
    marker = settings.data_dir / EMBEDDED_MARKER
    try:
        return str(json.loads(marker.read_text())["bootstrap"])
    except (OSError, ValueError, KeyError):
        return None


Task = Callable[[PulseApp], Coroutine[Any, Any, None]]


def run_worker(
    settings: Settings,
    bootstrap: str,
    *,
    tasks: tuple[Task, ...] = (),
    duration_s: float | None = None,
    on_stopped: Callable[[PulseApp], None] | None = None,
) -> None:
    """Create topics and the app, then run the Faust worker until stopped."""
    ensure_topics(bootstrap, settings.topic_partitions, settings.kafka_client_config(),
                  shared_restock=settings.shared_restock_topic,
                  alert_retention_days=settings.alert_topic_retention_days)
    # the embedded broker starts empty: checkpoints of an earlier run are of a log that is gone
    pulse = create_app(settings, bootstrap, fresh_log=not settings.kafka_bootstrap)
    for fn in tasks:
        _add_task(pulse, fn)
    try:
        # The hot path allocates a few short-lived objects per event; with the default
        # thresholds the cyclic GC would rescan the whole (large, long-lived) heap of the
        # app and the demand state over and over. Freeze what start-up built, collect less
        # often: a young-generation collection here costs tens of ms almost whatever its
        # size, so 200,000 (not 50,000) allocations between them cut the GC from ~2.2 to
        # ~0.7 us per event (bench/RESULTS.md); at most that many objects wait for cycle
        # detection.
        launch(pulse.app, settings, duration_s=duration_s, gc_threshold=200_000)
    finally:
        pulse.pipeline.close()
        if on_stopped is not None and not pulse.exit_code:
            on_stopped(pulse)
    if pulse.exit_code:
        raise SystemExit(pulse.exit_code)


def launch(
    app: faust.App, settings: Settings, *, duration_s: float | None = None,
    gc_threshold: int | None = None,
) -> None:
    """Run a Faust app (the worker's or the writer's) in ``faust.Worker`` until it stops:
    SIGTERM or Ctrl-C (Faust's signal handlers: the app's services and shutdown hooks stop
    it cleanly), or after ``duration_s`` through the same SIGTERM. A non-zero exit of the
    worker is raised; a clean one returns. ``gc_threshold``: freeze the heap built so far
    and collect the young generation every that many allocations."""
    if duration_s is not None:

        async def stop_later() -> None:
            await asyncio.sleep(duration_s)
            stop_process()

        app.task(stop_later)
    worker = faust.Worker(app, loglevel=settings.log_level.upper(), quiet=True)
    # Faust's start-up spinner writes cursor codes (ESC[?25l) and backspaces to stdout,
    # also when it is a file or a pipe; the demo draws its own view.
    worker.spinner = None
    if gc_threshold is not None:
        gc.freeze()
        gc.set_threshold(gc_threshold, 20, 100)
    try:
        worker.execute_from_commandline()
    except SystemExit as exc:
        if exc.code not in (0, None):
            raise


def _add_task(pulse: PulseApp, fn: Task) -> None:
    async def runner() -> None:
        await fn(pulse)

    runner.__name__ = getattr(fn, "__name__", "task")
    pulse.app.task(runner)
