"""Tumbling event-time windows and per-partition watermarks.

All times are integer epoch milliseconds (UTC); window sizes are whole seconds.
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_WINDOW_SECONDS: tuple[int, ...] = (300, 3600, 86_400)


@dataclass(slots=True)
class Watermark:
    """Event-time progress of one source partition.

    ``value`` = highest event ts seen minus ``allowed_lateness_ms``; it never goes back.
    Everything is in event time, never wall-clock time, so a replay of last month's
    topics sees last month's watermarks.
    """

    allowed_lateness_ms: int
    max_ts: int | None = None

    @property
    def value(self) -> int | None:
        return None if self.max_ts is None else self.max_ts - self.allowed_lateness_ms

    def observe(self, ts_ms: int) -> None:
        if self.max_ts is None or ts_ms > self.max_ts:
            self.max_ts = ts_ms

    def lateness(self, ts_ms: int) -> int:
        """How far ``ts_ms`` is behind the watermark (<= 0: on time)."""
        wm = self.value
        return 0 if wm is None else wm - ts_ms
