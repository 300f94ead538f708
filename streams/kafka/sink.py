"""The Kafka sink: a worker's flush goes to ``c2m.sink``; the single writer owns ClickHouse.

``write`` produces the flush (``streams.sink.encode_flush``: row chunks, checkpoints in the
last message) to the one partition of ``c2m.sink`` with ``acks=all`` and returns once every
message is acknowledged; only then does the pipeline commit the source offsets.

``load_partition`` asks the writer (loopback HTTP, ``C2M_WRITER_HOST``/``C2M_WRITER_PORT``)
for the latest checkpointed state of a source partition and waits until the writer's
checkpoint has reached the group's committed offset (read-your-writes: an offset is
committed only after the flush that covers it was acknowledged on ``c2m.sink``, and the
writer consumes that topic in order, so it eventually holds that checkpoint).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiohttp
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from streams.backoff import Backoff, retry
from streams.core.config import EngineConfig
from streams.core.engine import FlushBatch, LateEvent
from streams.errors import SinkUnavailable
from streams.faultfile import StallPoint
from streams.sink import SINK_TOPIC, Loaded, decode_loaded, encode_flush

log = logging.getLogger(__name__)

#: Requests up to this size; flushes are chunked well below it (``encode_flush``).
MAX_REQUEST_BYTES = 16 * 1024 * 1024


class KafkaSink:
    name = "kafka"

    def __init__(
        self,
        bootstrap: str,
        writer_url: str,
        *,
        client_config: dict[str, Any] | None = None,
        fault_file: Path | None = None,
        topic: str = SINK_TOPIC,
    ) -> None:
        self.bootstrap = bootstrap
        self.writer_url = writer_url.rstrip("/")
        self.client_config = client_config or {}
        self.fault_file = fault_file
        self._stall = StallPoint()
        self.topic = topic
        self._producer: AIOKafkaProducer | None = None
        self._http: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        await self._started()

    async def _started(self) -> tuple[AIOKafkaProducer, aiohttp.ClientSession]:
        if self._producer is not None and self._http is not None:
            return self._producer, self._http
        producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap,
            client_id="c2m-sink",
            acks="all",
            linger_ms=0,
            max_request_size=MAX_REQUEST_BYTES,
            **self.client_config,
        )
        try:
            await producer.start()
        except BaseException:
            await producer.stop()
            raise
        self._producer = producer
        self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60))
        return producer, self._http

    async def close(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None
        if self._http is not None:
            await self._http.close()
            self._http = None

    async def write(
        self, batch: FlushBatch, late: Sequence[LateEvent], lateness_ms: int
    ) -> None:
        messages = encode_flush(batch, late, lateness_ms)
        try:
            producer, _ = await self._started()
            # One partition, sent in order: aiokafka keeps one request in flight per
            # partition, so the checkpoint message lands after its rows.
            acks = [await producer.send(self.topic, value=m, partition=0) for m in messages]
            for ack in acks:
                await ack
        except KafkaError as exc:
            raise SinkUnavailable(f"sink produce failed: {type(exc).__name__}") from exc
        await self._fault_stall()

    async def _fault_stall(self) -> None:
        """Chaos drills: with the fault file saying ``stall`` (or ``stall N``: after N
        flushes), hold the flush after the acks and before the commit (the window in which a
        crash leaves an uncommitted flush)."""
        f = self.fault_file
        if f is None or not f.exists():
            return
        try:
            mode = f.read_text().strip()
        except OSError:
            return
        if not self._stall.reached(mode):
            return
        Path(f"{f}.stalled").touch()
        while f.exists():
            await asyncio.sleep(0.1)

    async def load_partition(
        self, topic: str, partition: int, committed: int | None, cfg: EngineConfig
    ) -> Loaded | None:
        """Ask the writer; wait (with backoff) until its checkpoint >= ``committed``."""
        _, http = await self._started()
        params = {"topic": topic, "partition": str(partition)}
        url = f"{self.writer_url}/api/sink/state"
        started, warned = time.monotonic(), 0.0

        async def ask() -> Loaded | None:
            try:
                async with http.get(url, params=params) as resp:
                    if resp.status != 200:
                        raise _NotYet(f"writer answered {resp.status}")
                    loaded = decode_loaded(await resp.json())
            except (aiohttp.ClientError, TimeoutError) as exc:
                raise _NotYet(f"writer unreachable: {type(exc).__name__}") from exc
            have = None if loaded is None else loaded.checkpoint.position
            if committed is None or (have is not None and have >= committed):
                return loaded
            raise _NotYet(f"writer checkpoint {have} < committed {committed}")

        def waiting(exc: BaseException, delay_s: float) -> None:
            nonlocal warned
            waited = time.monotonic() - started
            if waited - warned >= 10:
                warned = waited
                log.warning("restore of %s[%d] waits: %s (%.0fs)", topic, partition, exc,
                            waited)

        return await retry(ask, _NotYet, backoff=Backoff(0.1, 2.0), on_failure=waiting)


class _NotYet(Exception):
    """The writer cannot answer yet, or holds an older checkpoint than the committed
    offset: ask again."""
