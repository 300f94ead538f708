"""DemandConsumer.log_mismatch over a scripted probe: the record a restored checkpoint
ends on is fetched (empty fetches and broker errors tried again, three attempts in all,
through ``streams.backoff.retry``) and compared; the integration test
(tests/integration/test_log_identity.py) runs it against a real broker."""

from __future__ import annotations

import asyncio
from collections import namedtuple
from typing import Any

from aiokafka import TopicPartition
from aiokafka.errors import KafkaConnectionError, OffsetOutOfRangeError

from streams.core.engine import record_fingerprint
from streams.ingest import DemandConsumer

TP = TopicPartition("shop.orders", 0)
Rec = namedtuple("Rec", "offset timestamp key value")
THE_ONE = Rec(41, 1_000, b"k", b"v")


class _Probe:
    """Answers each getmany from a script: a list of records, an exception, or {}."""

    def __init__(self, script: list[Any], beginning: int = 0) -> None:
        self.script = script
        self.beginning = beginning
        self.fetches = 0

    def assign(self, tps: list[TopicPartition]) -> None:
        pass

    def seek(self, tp: TopicPartition, offset: int) -> None:
        assert offset == THE_ONE.offset

    async def getmany(self, tp: TopicPartition, timeout_ms: int, max_records: int) -> Any:
        self.fetches += 1
        step = self.script.pop(0)
        if isinstance(step, BaseException):
            raise step
        return {tp: step} if step else {}

    async def beginning_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        return {TP: self.beginning}


class _Pipeline:
    def last_record(self, topic: str, partition: int) -> tuple[int, int]:
        return (THE_ONE.timestamp, record_fingerprint(THE_ONE))


def _check(probe: _Probe, position: int = 42) -> str | None:
    consumer = DemandConsumer("unused:9092", "g", _Pipeline())  # type: ignore[arg-type]
    consumer._probe = probe  # type: ignore[assignment]
    return asyncio.run(consumer.log_mismatch(TP, position))


def test_the_record_the_checkpoint_ends_on_is_found_after_empty_fetches_and_errors() -> None:
    probe = _Probe([{}, KafkaConnectionError(), [THE_ONE]])
    assert _check(probe) is None and probe.fetches == 3


def test_another_record_at_the_offset_is_a_mismatch() -> None:
    other = Rec(41, 1_000, b"k", b"w")
    assert "is not the one the checkpoint ends on" in (_check(_Probe([[other]])) or "")


def test_three_empty_fetches_mean_the_log_ends_before_the_checkpoint() -> None:
    probe = _Probe([{}, {}, {}, [THE_ONE]])
    assert _check(probe) == "no record at the checkpoint's offset 41: the log ends before it"
    assert probe.fetches == 3


def test_records_removed_by_retention() -> None:
    # only the checked record expired: nothing unread is lost
    assert _check(_Probe([OffsetOutOfRangeError()], beginning=42)) is None
    assert _check(_Probe([OffsetOutOfRangeError()], beginning=50)) == (
        "records 42..49 were deleted from the log before they were processed (retention)")
    assert _check(_Probe([OffsetOutOfRangeError()], beginning=10)) == (
        "the log ends before the checkpoint's offset 41")
