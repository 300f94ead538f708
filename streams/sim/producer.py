"""Play the shop simulator onto Kafka in accelerated real time.

``run_simulation`` first publishes the catalog to ``shop.products`` (and flushes it, so
the workers know the SKUs before demand arrives), then streams the simulated shop
events. Simulated time runs ``speed`` times faster than the wall clock but never ahead
of it: every event time is at most "now", so nothing is dead-lettered as ``future_ts``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Final

import orjson
from aiokafka import AIOKafkaProducer

from streams.sim.model import ShopSimulator, SimEvent

#: Average events the simulator emits per order (page views, cancels, logistics).
EVENTS_PER_ORDER: Final = 20.0


def orders_per_hour_for(rate: float, speed: float) -> float:
    """Order volume that makes the simulator produce about ``rate`` events per wall second."""
    return rate * 3600.0 / speed / EVENTS_PER_ORDER


#: Futures awaited together (and progress reported) every this many sends.
SEND_BATCH: Final = 500
#: Simulated time covered when ``duration_s`` is None and no ``start_ms`` is given, as a
#: number of wall seconds at ``speed``; after that the simulation runs in real time.
DEFAULT_BACKFILL_WALL_S: Final = 600.0
#: At most this much wall time's worth of simulated time is generated per step.
_STEP_WALL_S: Final = 0.5
_IDLE_S: Final = 0.05


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class _TokenBucket:
    """At most ``rate`` takes per second, with a burst of a tenth of a second."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.capacity = max(1.0, rate / 10.0)
        self.tokens = self.capacity
        self.last = time.monotonic()

    def _refill(self) -> None:
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.last) * self.rate)
        self.last = now

    async def take(self, give_up: Callable[[], bool]) -> bool:
        """Wait for a token and take it; False (none taken) once ``give_up()`` is true,
        asked at least every 0.1 s (at a low rate a token can be minutes away)."""
        self._refill()
        while self.tokens < 1.0:
            if give_up():
                return False
            await asyncio.sleep(min(max((1.0 - self.tokens) / self.rate, 0.002), 0.1))
            self._refill()
        self.tokens -= 1.0
        return True


async def _pause(stop: asyncio.Event | None, seconds: float) -> None:
    """Sleep ``seconds``, or less if ``stop`` is set meanwhile."""
    if stop is None:
        await asyncio.sleep(seconds)
        return
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


async def run_simulation(
    bootstrap: str,
    *,
    seed: int,
    rate: float | None,
    duration_s: float | None,
    start_ms: int | None = None,
    speed: float = 60.0,
    max_events: int | None = None,
    stop: asyncio.Event | None = None,
    on_progress: Callable[[int], None] | None = None,
    producer_config: dict[str, Any] | None = None,
    sim_options: dict[str, Any] | None = None,
) -> int:
    """Produce the catalog, then simulated shop events; return how many were produced.

    - ``speed``: simulated seconds per wall second. Simulated time never passes the wall
      clock (it then runs in real time), so event ts are never in the future.
    - ``start_ms``: first simulated instant; by default ``now - duration_s * speed``, so
      the run ends about "now" (without ``duration_s``: ten wall minutes' worth at
      ``speed``, after which the simulation continues in real time).
    - ``rate``: cap in events per wall second (token bucket); None = as fast as possible.
      When the cap binds, simulated time falls behind instead of events piling up.
    - Stops after ``duration_s`` wall seconds of producing (counted once the producer
      has connected), after ``max_events`` events (catalog included), or when ``stop`` is
      set, whichever comes first; then flushes.
    - ``producer_config``: extra ``AIOKafkaProducer`` arguments (security settings...);
      they override the defaults ``acks="all"``, ``linger_ms=5``,
      ``enable_idempotence=False``.
    - ``sim_options``: keyword arguments for ``ShopSimulator`` (orders_per_hour, promo...).
    """
    if speed <= 0:
        raise ValueError("speed must be > 0")
    if rate is not None and rate <= 0:
        raise ValueError("rate must be > 0 (or None for no cap)")
    if duration_s is not None and duration_s < 0:
        raise ValueError("duration_s must be >= 0")
    loop = asyncio.get_running_loop()
    if start_ms is None:
        span_s = duration_s if duration_s is not None else DEFAULT_BACKFILL_WALL_S
        start_ms = max(0, _now_ms() - int(span_s * speed * 1000))
    sim = ShopSimulator(seed, start_ms, **(sim_options or {}))
    bucket = _TokenBucket(rate) if rate is not None else None
    step_ms = max(1000, int(_STEP_WALL_S * speed * 1000))

    kwargs: dict[str, Any] = {
        "bootstrap_servers": bootstrap,
        "acks": "all",
        "linger_ms": 5,
        "enable_idempotence": False,
    }
    kwargs.update(producer_config or {})
    producer = AIOKafkaProducer(**kwargs)
    await producer.start()
    # the duration counts from here: connecting to a slow broker does not eat into it
    wall_start = loop.time()
    produced = 0
    pending: list[asyncio.Future[Any]] = []

    async def drain() -> None:
        nonlocal produced
        if pending:
            await asyncio.gather(*pending)
            produced += len(pending)
            pending.clear()
            if on_progress is not None:
                on_progress(produced)

    def done() -> bool:
        if stop is not None and stop.is_set():
            return True
        if max_events is not None and produced + len(pending) >= max_events:
            return True
        return duration_s is not None and loop.time() - wall_start >= duration_s

    async def send(ev: SimEvent) -> None:
        if bucket is not None and not await bucket.take(done):
            return  # the run ended while waiting for the rate
        fut = await producer.send(
            ev.topic, value=orjson.dumps(ev.value), key=ev.key.encode("utf-8")
        )
        pending.append(fut)
        if len(pending) >= SEND_BATCH:
            await drain()

    try:
        for ev in sim.catalog():
            if done():
                break
            await send(ev)
        await drain()
        await producer.flush()

        buffer: deque[SimEvent] = deque()
        position = start_ms
        while not done():
            if not buffer:
                elapsed = loop.time() - wall_start
                target = min(start_ms + int(elapsed * speed * 1000), _now_ms())
                if target > position:
                    position = min(target, position + step_ms)
                    buffer.extend(sim.events(position))
                if not buffer:
                    await drain()
                    await _pause(stop, _IDLE_S)
                    continue
            await send(buffer.popleft())
        await drain()
        await producer.flush()
    finally:
        await producer.stop()
    return produced
