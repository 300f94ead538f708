"""The fault file of chaos drills (``C2M_CLICKHOUSE_FAULT_FILE``): its ``stall`` modes.

Both places that can hold a flush at its last step read it: the fault-injecting ClickHouse
client (``streams.clickhouse.faults``: the ``checkpoints`` insert) and the Kafka sink
(``streams.kafka.sink``: after ``c2m.sink`` acknowledged the flush, before the commit).
``stall`` stalls the first such point, ``stall N`` lets N through and stalls the next.
No ClickHouse or Kafka import here, so the Kafka sink does not load the ClickHouse client.
"""

from __future__ import annotations


def stall_skips(mode: str | None) -> int | None:
    """For a fault file content: None unless it asks to stall, else how many stall points
    to let through first (``stall`` = 0, ``stall 2`` = 2)."""
    if mode is None:
        return None
    words = mode.split()
    if not words or words[0] != "stall":
        return None
    if len(words) == 2 and words[1].isdigit():
        return int(words[1])
    return 0 if len(words) == 1 else None


class StallPoint:
    """Counts the stall points passed; ``reached`` is True when this one must stall."""

    def __init__(self) -> None:
        self.passed = 0

    def reached(self, mode: str | None) -> bool:
        skips = stall_skips(mode)
        if skips is None:
            return False
        if self.passed < skips:
            self.passed += 1
            return False
        return True
