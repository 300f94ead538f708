"""``EngineConfig``: the demand engine's settings.

A plain dataclass in a module of its own, so that ``streams.settings`` (and with it
``c2m config``) builds one without importing the engine and its compiled lanes.
``streams.core.engine`` imports it from here.
"""

from __future__ import annotations

from dataclasses import dataclass

from streams.core.windows import DEFAULT_WINDOW_SECONDS

#: The largest source partition and offset c2m-pulse holds (ClickHouse's
#: ``source_partition UInt16``; ``position UInt64`` written from a Kafka offset, an int64).
#: ClickHouse would wrap a larger query parameter around (65536 reads as partition 0), so
#: the store and the CLI refuse larger ones.
MAX_PARTITION = 2**16 - 1
MAX_OFFSET = 2**63 - 1


@dataclass(frozen=True, slots=True)
class EngineConfig:
    window_seconds: tuple[int, ...] = DEFAULT_WINDOW_SECONDS
    allowed_lateness_ms: int = 10 * 60_000
    correction_horizon_ms: int = 48 * 3_600_000
    dedup_horizon_ms: int = 48 * 3_600_000
    max_future_ms: int = 5 * 60_000
    max_past_ms: int = 365 * 86_400_000  # older than this before the record time: stale_ts
    max_message_bytes: int = 1_048_576
    live_retention_ms: int = 7 * 86_400_000  # hourly and daily windows kept for rolling sums
    #: schemas.fastpath before pydantic, and the page-view lane; False: the reference paths
    fast_paths: bool = True
    #: with fast_paths: every demand topic through its compiled lane (streams/core/_lanes.c);
    #: False: the Python paths (the reference the lanes are tested against)
    native: bool = True
    #: the market's time zone (IANA): days start at its local midnight (streams.core.calendar)
    timezone: str = "UTC"

    def keep_from_s(self, window_seconds: int, watermark_ms: int) -> int:
        """Windows ending at or before this (epoch s) can be dropped from memory."""
        keep = self.correction_horizon_ms
        if window_seconds >= 3600:
            keep = max(keep, self.live_retention_ms)
        return (watermark_ms - keep) // 1000
