"""Running the Faust worker from our CLI: logging, the optional embedded broker, topics."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import os
import signal
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

import faust

from streams.app import PulseApp, create_app
from streams.kafka.embedded import EmbeddedBroker
from streams.kafka.topics import ensure_topics
from streams.settings import Settings

log = logging.getLogger(__name__)

#: Loggers that format debug messages on hot paths even when not shown.
_NOISY = ("aiokafka", "faust", "mode", "kafka", "clickhouse_connect")


def configure_logging(level: str) -> None:
    fmt = "%(asctime)s %(levelname)s %(name)s %(message)s"
    logging.basicConfig(level=level.upper(), format=fmt)
    for name in _NOISY:
        logging.getLogger(name).setLevel(max(logging.WARNING, logging.getLevelName(level.upper())))


@contextlib.contextmanager
def kafka_bootstrap(settings: Settings) -> Iterator[str]:
    """The configured bootstrap servers, or an embedded broker for the duration."""
    if settings.kafka_bootstrap:
        yield settings.kafka_bootstrap
        return
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    marker = settings.data_dir / EMBEDDED_MARKER
    with EmbeddedBroker(log_path=settings.data_dir / "broker.log") as broker:
        log.warning("started embedded Kafka broker (Tansu) on %s", broker.bootstrap)
        # Other commands (`c2m alerts tail`) find the running embedded stack through this.
        marker.write_text(
            json.dumps({"bootstrap": broker.bootstrap, "web_port": settings.web_port})
        )
        try:
            yield broker.bootstrap
        finally:
            marker.unlink(missing_ok=True)


EMBEDDED_MARKER = "embedded.json"


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
    if duration_s is not None:

        async def stop_later() -> None:
            await asyncio.sleep(duration_s)
            # Same path as Ctrl-C / SIGTERM: Faust's worker stops everything cleanly.
            os.kill(os.getpid(), signal.SIGTERM)

        pulse.app.task(stop_later)

    worker = faust.Worker(
        pulse.app,
        loglevel=settings.log_level.upper(),
        quiet=True,
    )
    # The hot path allocates a few short-lived objects per event; with the default
    # thresholds the cyclic GC would rescan the whole (large, long-lived) heap of the app
    # and the demand state over and over. Freeze what start-up built, collect less often:
    # a young-generation collection here costs tens of ms almost whatever its size, so
    # 200,000 (not 50,000) allocations between them cut the GC from ~2.2 to ~0.7 us per
    # event (bench/RESULTS.md); at most that many objects wait for cycle detection.
    gc.freeze()
    gc.set_threshold(200_000, 20, 100)
    try:
        worker.execute_from_commandline()
    except SystemExit as exc:
        if exc.code not in (0, None):
            raise
    finally:
        pulse.pipeline.close()
        if on_stopped is not None and not pulse.exit_code:
            on_stopped(pulse)
    if pulse.exit_code:
        raise SystemExit(pulse.exit_code)


def _add_task(pulse: PulseApp, fn: Task) -> None:
    async def runner() -> None:
        await fn(pulse)

    runner.__name__ = getattr(fn, "__name__", "task")
    pulse.app.task(runner)
