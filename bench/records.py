"""Simulated events as the records a consumer would fetch: keyed into partitions the way a
producer's default partitioner spreads them (CRC32 of the key; the catalog on partition 0)
with consecutive offsets per partition. Shared by ``python -m bench.read`` and the
dashboard test's data (``tests/integration/dashboard_data.py``), which feed the real engine
without Kafka."""

from __future__ import annotations

import zlib
from collections import defaultdict
from typing import Any

import orjson

from streams.core.engine import Record


class Keyed:
    """``keyed(topic, key, value, ts_ms)`` -> the next Record of the key's partition."""

    def __init__(self, partitions: int) -> None:
        self.partitions = partitions
        self.offsets: dict[tuple[str, int], int] = defaultdict(int)

    def __call__(self, topic: str, key: str, value: dict[str, Any], ts_ms: int) -> Record:
        part = 0 if topic == "shop.products" else zlib.crc32(key.encode()) % self.partitions
        off = self.offsets[(topic, part)]
        self.offsets[(topic, part)] = off + 1
        return Record(topic, part, off, ts_ms, key.encode(), orjson.dumps(value))
