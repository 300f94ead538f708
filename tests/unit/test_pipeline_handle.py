"""DemandPipeline.handle skips re-delivered records, whatever the interleaving of partitions."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson

from streams.core.engine import DemandEngine, Record
from streams.pipeline import DemandPipeline

T0 = 1_794_398_400_000


def _view(p: int, offset: int) -> Record:
    value = orjson.dumps({"event_id": f"{p}-{offset}", "ts": T0 + offset, "shop_id": "s",
                          "event_type": "page_view", "sku": "A", "visitor_id": "v",
                          "region": "浙江"})
    return Record("shop.pageviews", p, offset, T0 + 10_000, None, value)


async def _no_dead_letters(key: bytes | None, value: bytes) -> Any:  # pragma: no cover
    raise AssertionError("no dead letters expected")


class _NoSink:
    """handle() never writes; a flush would fail loudly."""


def test_redelivered_records_are_skipped() -> None:
    engine = DemandEngine()
    pipeline = DemandPipeline(engine, None, _no_dead_letters, sink=_NoSink())  # type: ignore[arg-type]
    try:
        asyncio.run(pipeline.handle([_view(p, o) for o in range(5) for p in (0, 1)]))
        # a re-delivery overlapping the first batch, partitions interleaved and in runs
        again = [_view(0, o) for o in range(3, 8)] + [_view(1, o) for o in range(0, 6)]
        asyncio.run(pipeline.handle([again[i] for i in (0, 5, 1, 6, 2, 7, 3, 8, 4, 9, 10)]))
        asyncio.run(pipeline.handle([_view(1, 6), _view(1, 7)]))
        # the first run is new, a later partition's run starts with a re-delivery
        asyncio.run(pipeline.handle([_view(0, 8), _view(0, 9), _view(1, 7), _view(1, 8)]))
    finally:
        pipeline.close()
    for p, n in ((0, 10), (1, 9)):
        st = engine.states[("shop.pageviews", p)]
        assert st.position == n
        assert st.ledger.consumed == st.ledger.processed == n
        assert st.ledger.duplicates == 0
