"""Capped exponential backoff between retries of a failing sink (the demand consumer's
flush, the writer's ClickHouse write): 0.2 s, 0.4 s, ... at most 30 s; back to the first
delay after a success. A stop request ends a wait at once."""

from __future__ import annotations

import asyncio
import contextlib


class Backoff:
    __slots__ = ("cap_s", "delay_s", "first_s")

    def __init__(self, first_s: float = 0.2, cap_s: float = 30.0) -> None:
        self.first_s = first_s
        self.cap_s = cap_s
        self.delay_s = first_s

    def reset(self) -> None:
        """The retried operation succeeded."""
        self.delay_s = self.first_s

    async def wait(self, stopping: asyncio.Event) -> bool:
        """Sleep the current delay, or until ``stopping`` is set (then True); the next
        wait is twice as long, up to the cap."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), timeout=self.delay_s)
        self.delay_s = min(self.delay_s * 2, self.cap_s)
        return stopping.is_set()
