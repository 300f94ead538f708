"""The retry backoff of the consumer's flush and the writer's ClickHouse write."""

from __future__ import annotations

import asyncio
import time

from streams.backoff import Backoff


def test_doubles_up_to_the_cap_and_resets() -> None:
    async def run() -> list[float]:
        b = Backoff(first_s=0.01, cap_s=0.04)
        stopping = asyncio.Event()
        seen = []
        for _ in range(4):
            seen.append(b.delay_s)
            assert await b.wait(stopping) is False
        b.reset()
        seen.append(b.delay_s)
        return seen

    assert asyncio.run(run()) == [0.01, 0.02, 0.04, 0.04, 0.01]


def test_a_stop_request_ends_the_wait_at_once() -> None:
    async def run() -> tuple[bool, float]:
        b = Backoff(first_s=30.0)
        stopping = asyncio.Event()
        asyncio.get_running_loop().call_later(0.05, stopping.set)
        t0 = time.monotonic()
        stopped = await b.wait(stopping)
        return stopped, time.monotonic() - t0

    stopped, waited = asyncio.run(run())
    assert stopped is True and waited < 5
