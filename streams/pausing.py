"""The pausing consumer loop of the demand consumer and the writer, and the sink's health.

Both processes do the same thing with a sink that fails: fetch and apply batches, write
what was applied (``flush``), and when a write fails pause every assigned partition (the
consumer keeps polling, so it stays in its group, but fetches nothing and memory stays
bounded), retry the write with capped exponential backoff (``streams.backoff``), and
resume once a write succeeds. ``PausingLoop`` is that loop; each side says how to poll,
when a write is due, when fetching must wait for a write in flight (back-pressure) and
how to write, through the ``Side`` protocol:

- the demand consumer (``streams.ingest``) writes in the background: batches keep being
  applied while a flush is written, until ``backlogged`` (``max_pending_events``);
- the writer (``streams.writer``) writes in the foreground: what it fetched while a write
  ran would not be in that write.

``SinkHealth`` keeps ``c2m_sink_healthy``, ``c2m_sink_failures_total`` and
``c2m_sink_retries_total`` the same way for both (and for the restore reads): a failure is
every failed call, by operation; a retry is every call made again after a failed one (so
a stop in the middle of an outage leaves one failure more than retries).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Protocol

from streams import metrics
from streams.backoff import Backoff
from streams.errors import C2MError


def count_failure(operation: str) -> None:
    """One failed sink call (``write`` or ``read``)."""
    metrics.FLUSH_FAILURES.labels(operation).inc()


def count_retry() -> None:
    """One sink call made again after a failed one."""
    metrics.FLUSH_RETRIES.inc()


class SinkHealth:
    """Whether writes to a sink succeed: 1 in ``c2m_sink_healthy`` from the first write
    that succeeds, 0 from the first that fails. Logs once per change of state, in the
    owner's logger: ``failing`` (then ", will retry: <error>") at the first failure,
    ``back`` at the first success after failures."""

    __slots__ = ("back", "failing", "healthy", "log")

    def __init__(self, log: logging.Logger, failing: str, back: str) -> None:
        self.log = log
        self.failing = failing
        self.back = back
        self.healthy = True

    def attempt(self) -> None:
        """A write is about to be made: a retry when the last one failed."""
        if not self.healthy:
            count_retry()

    def failed(self, exc: BaseException, *, retrying: bool = True) -> None:
        if self.healthy and retrying:
            self.log.warning("%s, will retry: %s", self.failing, exc)
        self.healthy = False
        metrics.SINK_HEALTHY.set(0)
        count_failure("write")

    def succeeded(self) -> None:
        if not self.healthy:
            self.log.warning("%s", self.back)
        self.healthy = True
        metrics.SINK_HEALTHY.set(1)


class Side(Protocol):
    """What ``PausingLoop`` drives (the demand consumer, the writer)."""

    async def poll(self) -> int:
        """Fetch one batch (nothing while paused) and take it in; the records fetched."""

    def flush_due(self, caught_up: bool) -> bool:
        """Whether to write now (asked while no write runs); ``caught_up``: the last
        poll fetched nothing."""

    def backlogged(self) -> bool:
        """Fetching must wait for the write in flight (back-pressure)."""

    async def flush(self) -> bool:
        """One write attempt; False when the sink failed (everything stays pending)."""


class PausingLoop:
    """Poll, write when due, pause on a failed write and retry it with backoff.

    ``pause`` / ``resume`` pause and resume the consumer's partitions (``resume`` only
    those that may go on). ``background``: a write runs as a task while the next batches
    are polled (one write at a time; polling waits for it only when the side is
    backlogged); otherwise every write is awaited before the next poll.
    """

    def __init__(
        self,
        side: Side,
        pause: Callable[[], None],
        resume: Callable[[], None],
        stopping: asyncio.Event,
        *,
        background: bool,
        backoff: Backoff | None = None,
    ) -> None:
        self.side = side
        self._pause = pause
        self._resume = resume
        self.stopping = stopping
        self.background = background
        self.backoff = backoff if backoff is not None else Backoff()
        #: the sink is failing: partitions paused, the write retried with backoff
        self.paused = False

    async def run(self) -> None:
        """Until ``stopping`` is set; a write in flight is awaited before returning (the
        side's final write goes after it)."""
        side = self.side
        flushing: asyncio.Task[bool] | None = None
        try:
            while not self.stopping.is_set():
                fetched = await side.poll()  # paused partitions return nothing
                if flushing is None and not self.paused:
                    if not side.flush_due(caught_up=not fetched):
                        continue
                    flushing = asyncio.create_task(side.flush())
                    if self.background:
                        continue
                if flushing is not None:
                    if not flushing.done() and (not self.background or side.backlogged()):
                        await asyncio.wait([flushing])
                    if not flushing.done():
                        continue
                    ok, flushing = flushing.result(), None
                    if ok:
                        continue
                    self._pause()
                    self.paused = True
                # The sink is failing: nothing is fetched, the consumer keeps polling (it
                # stays in the group); retry in the foreground with capped backoff.
                if await self.backoff.wait(self.stopping):
                    break
                if await side.flush():
                    self.backoff.reset()
                    self._resume()
                    self.paused = False
        finally:
            if flushing is not None:
                with contextlib.suppress(Exception):
                    await flushing


async def run_until_fatal(
    run: Callable[[], Awaitable[None]], on_fatal: Callable[[C2MError], None] | None
) -> None:
    """A consuming service's task (the demand consumer's, the writer's): ``run``; an error
    no retry can fix (a ``C2MError``: ClickHouse refused a write) goes to ``on_fatal``
    (the app stops with its exit code), or is raised without one."""
    try:
        await run()
    except C2MError as exc:
        if on_fatal is None:
            raise
        on_fatal(exc)
