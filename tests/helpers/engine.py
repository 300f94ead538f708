"""Feeding the engine and the pipeline a flat list of records, as tests and tools build
them (the worker hands over aiokafka's runs per partition: ``process_runs``,
``handle_runs``)."""

from __future__ import annotations

from collections.abc import Sequence

from streams.core.demand import Ledger
from streams.core.engine import BatchOutcome, DemandEngine, KafkaRecord, runs_of
from streams.pipeline import DemandPipeline


def process(
    engine: DemandEngine, records: Sequence[KafkaRecord], out: BatchOutcome | None = None
) -> BatchOutcome:
    """Apply demand records (any mix of partitions, each in offset order)."""
    return engine.process_runs(runs_of(records), out)


async def handle(
    pipeline: DemandPipeline, records: Sequence[KafkaRecord], oldest_ts_ms: int | None = None
) -> None:
    """Apply one batch (any partitions, each in offset order) through the pipeline."""
    await pipeline.handle_runs(runs_of(records), oldest_ts_ms)


def balanced(lg: Ledger) -> bool:
    """consumed = processed + dead_lettered + duplicates + late."""
    return lg.consumed == lg.processed + lg.dead_lettered + lg.duplicates + lg.late
