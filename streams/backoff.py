"""Capped exponential backoff, and the one retry loop built on it.

``Backoff``: 0.2 s, 0.4 s, ... at most 30 s by default; back to the first delay after a
success; a stop request ends a wait at once. The pausing consumer loop
(``streams.pausing``) waits with it between retries of a failed flush or write.

``retry``: call an operation until it returns, waiting a ``Backoff`` after each failure
it is told to retry (every other exception goes through). Every retry loop of the
project is this one: the restore read of a partition (``DemandPipeline.restore``), the
group's committed offset and the fetch of the record a checkpoint ends on
(``streams.ingest``), the wait for the writer's checkpoint (``streams.kafka.sink``) and
the catalog topic's metadata (``streams.catalog_reader``). The pausing loop's retries of
a failed flush or write wait with a ``Backoff`` between its own polls (it must keep
polling to stay in the group, so it cannot block in ``retry``).

``poll_until``: its synchronous twin for waits with a deadline before anything runs (a
broker coming up: ``streams.kafka.topics.probe_kafka``, ``streams.kafka.embedded``).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


class Backoff:
    __slots__ = ("cap_s", "delay_s", "first_s")

    def __init__(self, first_s: float = 0.2, cap_s: float = 30.0) -> None:
        self.first_s = first_s
        self.cap_s = cap_s
        self.delay_s = first_s

    def reset(self) -> None:
        """The retried operation succeeded."""
        self.delay_s = self.first_s

    async def wait(self, stopping: asyncio.Event | None = None) -> bool:
        """Sleep the current delay, or until ``stopping`` is set (then True); the next
        wait is twice as long, up to the cap."""
        if stopping is None:
            await asyncio.sleep(self.delay_s)
        else:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), timeout=self.delay_s)
        self.delay_s = min(self.delay_s * 2, self.cap_s)
        return stopping is not None and stopping.is_set()


async def retry(
    attempt: Callable[[], Awaitable[T]],
    retry_on: type[BaseException] | tuple[type[BaseException], ...],
    *,
    backoff: Backoff | None = None,
    on_failure: Callable[[BaseException, float], None] | None = None,
    on_retry: Callable[[], None] | None = None,
    attempts: int | None = None,
) -> T:
    """``await attempt()`` until it returns; after a ``retry_on`` exception call
    ``on_failure(exc, delay_s)`` (log, count), wait ``backoff`` (default ``Backoff()``),
    call ``on_retry()`` and attempt again. Any other exception is raised at once, so
    ``retry_on`` is the narrowest class that means "try again". With ``attempts``, the
    exception of the last allowed attempt is raised instead of waiting again."""
    backoff = backoff if backoff is not None else Backoff()
    tried = 0
    while True:
        try:
            return await attempt()
        except retry_on as exc:
            tried += 1
            if attempts is not None and tried >= attempts:
                raise
            if on_failure is not None:
                on_failure(exc, backoff.delay_s)
        await backoff.wait()
        if on_retry is not None:
            on_retry()


def poll_until(
    attempt: Callable[[float], T | None], timeout_s: float, interval_s: float
) -> T | None:
    """Call ``attempt(remaining_s)`` until it returns something other than None, sleeping
    ``interval_s`` between calls; None once ``timeout_s`` has passed (the last call is made
    at or after the deadline, so a slow start is seen). ``attempt`` raises to give up
    early (e.g. the process it waits for has exited)."""
    deadline = time.monotonic() + timeout_s
    while True:
        got = attempt(max(deadline - time.monotonic(), 0.0))
        if got is not None:
            return got
        if time.monotonic() >= deadline:
            return None
        time.sleep(interval_s)
