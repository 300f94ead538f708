"""Reads the compacted catalog topic into the engine's catalog, like a Faust GlobalTable.

A ``mode.Service`` attached to the worker's Faust app (``streams.app``): it reads while
the app runs and stops with it.

Every worker reads every partition of ``shop.products`` without a consumer group. At
start it reads up to the end offsets it saw when it started, then sets ``ready``; the
demand consumer service (``streams.ingest.DemandConsumer``, ``start_after``) begins
consuming only after ``ready``, so no order is mapped with a half-read catalog. Later
upserts apply as they arrive, through the pipeline (``DemandPipeline.apply_product``:
under its state lock, like batches, restores and flush cuts; the reader never touches
the engine). Invalid products go to the dead-letter topic.

End offsets are compared with ``>=`` on the position after each fetched batch: some
brokers (Tansu) report a high watermark that stops at the base offset of the last
batch, but a fetch always returns the whole batch, so the comparison still ends after
the last record.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any, Protocol

from aiokafka import AIOKafkaConsumer, TopicPartition
from mode import Service

from schemas.contract import TOPIC_PRODUCTS
from streams import metrics
from streams.backoff import Backoff, retry
from streams.core.engine import KafkaRecord, Record

log = logging.getLogger(__name__)


class Catalogue(Protocol):
    """Where the catalog goes (``streams.pipeline.DemandPipeline``)."""

    async def apply_product(self, record: KafkaRecord) -> bool:
        """Apply one catalog record; False when it was rejected (and dead-lettered)."""

    @property
    def catalog_size(self) -> int:
        """SKUs in the catalog."""


class CatalogReader(Service):
    def __init__(
        self,
        bootstrap: str,
        catalogue: Catalogue,
        client_config: dict[str, Any] | None = None,
        topic: str = TOPIC_PRODUCTS,
    ) -> None:
        super().__init__()
        self.bootstrap = bootstrap
        self.catalogue = catalogue
        self.client_config = client_config or {}
        self.topic = topic
        self.ready = asyncio.Event()
        self._consumer: AIOKafkaConsumer | None = None

    @Service.task
    async def _reading(self) -> None:
        """The service's one task: cancelled when the service stops."""
        await self.run()

    async def run(self) -> None:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            **self.client_config,
        )
        self._consumer = consumer
        await consumer.start()
        try:
            tps = [TopicPartition(self.topic, p) for p in sorted(await self._partitions(consumer))]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            ends = await consumer.end_offsets(tps)
            pending = {tp for tp in tps if ends[tp] > 0}
            if not pending:
                self.ready.set()
            while True:
                batches = await consumer.getmany(timeout_ms=500, max_records=5000)
                for tp, msgs in batches.items():
                    for m in msgs:
                        rec = Record(m.topic, m.partition, m.offset, m.timestamp, m.key, m.value)
                        applied = await self.catalogue.apply_product(rec)
                        if applied and m.value is None:
                            metrics.CATALOG_TOMBSTONES.inc()
                    if msgs and tp in pending and msgs[-1].offset + 1 >= ends[tp]:
                        pending.discard(tp)
                metrics.CATALOG_PRODUCTS.set(self.catalogue.catalog_size)
                if not self.ready.is_set() and not pending:
                    log.info("catalog loaded: %d SKUs", self.catalogue.catalog_size)
                    self.ready.set()
        finally:
            with contextlib.suppress(Exception):
                await consumer.stop()

    async def _partitions(self, consumer: AIOKafkaConsumer) -> set[int]:
        """The catalog topic's partitions, asking for fresh metadata every 0.1 s for up to
        10 s (a topic just created); then partition 0."""

        async def known() -> set[int]:
            parts = consumer.partitions_for_topic(self.topic)
            if not parts:
                await consumer._client.force_metadata_update()
                raise _NoMetadata
            return set(parts)

        try:
            return await retry(known, _NoMetadata, backoff=Backoff(0.1, 0.1), attempts=100)
        except _NoMetadata:
            return {0}


class _NoMetadata(Exception):
    """The broker has not told of the catalog topic's partitions yet."""
