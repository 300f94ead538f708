"""``c2m alerts tail``: what a factory runs to follow its alerts (a plain Kafka consumer).

With ``--factory F`` it reads only F's own topic ``factory.<F>.restock-alerts``
(``streams.core.tenancy``; what a Kafka ACL on the prefix ``factory.<F>.`` allows), plus
the market topic ``factory.demand-signals`` with ``--market``; without a factory (an
operator) every factory's topic, the shared ``factory.restock-alerts`` if it exists and
the market topic. It reads from the beginning (the current state first), without a
consumer group, and prints each alert version once, newest version per alert_id only: a
re-delivered message is not printed twice. A topic that does not exist yet (a factory
without alerts so far) is picked up once it appears.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from pydantic import ValidationError

from schemas.alerts import TOPIC_DEMAND_SIGNALS, TOPIC_RESTOCK_ALERTS, AlertMessage
from streams.core.calendar import UTC_CALENDAR, MarketCalendar
from streams.core.tenancy import restock_topic, restock_topic_component
from streams.errors import BrokerError

_STATE = {"open": "新 NEW", "updated": "更新 UPD", "resolved": "解除 RES"}
_SEVERITY = {"critical": "紧急 CRIT", "warning": "注意 WARN", "info": "信息 INFO"}


def for_factory(msg: AlertMessage, factory: str | None) -> bool:
    """Restock alerts of ``factory`` only (a message of another factory is dropped even if
    it were on this factory's topic); market signals are for every factory."""
    if not factory:
        return True
    if msg.kind == "restock":
        return msg.factory_id == factory
    return True


def tail_topics(factory: str | None, market: bool, available: set[str]) -> list[str]:
    """The topics ``c2m alerts tail`` reads: a factory's own topic (and the market topic
    with ``market``), or for an operator (no factory) every factory's topic among
    ``available``, the shared restock topic and the market topic."""
    if factory:
        return [restock_topic(factory), *([TOPIC_DEMAND_SIGNALS] if market else [])]
    found = sorted(t for t in available if restock_topic_component(t) is not None)
    return [*found, TOPIC_RESTOCK_ALERTS, TOPIC_DEMAND_SIGNALS]


def _when(rfc3339: str, cal: MarketCalendar) -> str:
    """The alert's hour in the market's local time, with the zone."""
    try:
        t = datetime.fromisoformat(rfc3339.replace("Z", "+00:00"))
    except ValueError:
        return rfc3339
    s = int(t.replace(tzinfo=t.tzinfo or UTC).timestamp())
    return f"{cal.format(s)} {cal.abbreviation(s)}"


def format_line(msg: AlertMessage, lang: str, cal: MarketCalendar = UTC_CALENDAR) -> str:
    head = f"{_when(msg.window_start, cal)}  {_STATE[msg.state]}  " \
           f"{_SEVERITY[msg.severity]}  #{msg.alert_id} v{msg.version}"
    text = {"zh": msg.summary_zh, "en": msg.summary_en}.get(lang)
    if text is None:
        text = f"{msg.summary_zh}\n    {msg.summary_en}"
    return f"{head}\n    {text}"


class AlertFollower:
    """Deduplicating filter over alert messages (pure: the tests feed it directly)."""

    def __init__(self, factory: str | None) -> None:
        self.factory = factory
        self.seen: dict[str, int] = {}
        self.invalid = 0

    def accept(self, raw: bytes | None) -> AlertMessage | None:
        try:
            msg = AlertMessage.model_validate_json(raw or b"")
        except ValidationError:
            self.invalid += 1
            return None
        if not for_factory(msg, self.factory):
            return None
        if self.seen.get(msg.alert_id, 0) >= msg.version:
            return None
        self.seen[msg.alert_id] = msg.version
        return msg


async def tail(
    bootstrap: str,
    factory: str | None,
    emit: Callable[[AlertMessage], None],
    *,
    idle_exit_s: float | None = None,
    client_config: dict[str, Any] | None = None,
    market: bool = False,
) -> int:
    """Print alerts until interrupted (or ``idle_exit_s`` without a message). Returns count."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest",
        **(client_config or {}),
    )
    await consumer.start()
    follower = AlertFollower(factory)
    shown = 0
    try:
        tps = await _find_topics(consumer, factory, market, [])
        if not tps and not factory:
            raise BrokerError(
                f"no alert topics on {bootstrap}: is a c2m worker (or c2m demo) running?"
            )
        last = time.monotonic()
        looked = time.monotonic()
        while idle_exit_s is None or time.monotonic() - last < idle_exit_s:
            if time.monotonic() - looked > _LOOK_AGAIN_S:  # topics created since
                looked = time.monotonic()
                tps = await _find_topics(consumer, factory, market, tps)
            if not tps:
                await asyncio.sleep(0.5)
                continue
            batch = await consumer.getmany(timeout_ms=500, max_records=1000)
            records = [r for rs in batch.values() for r in rs]
            if records:
                last = time.monotonic()
            records.sort(key=lambda r: (r.timestamp, r.topic, r.partition, r.offset))
            for r in records:
                msg = follower.accept(r.value)
                if msg is not None:
                    emit(msg)
                    shown += 1
    finally:
        await consumer.stop()
    return shown


#: how often the tail looks for alert topics that did not exist yet
_LOOK_AGAIN_S = 2.0


async def _find_topics(
    consumer: AIOKafkaConsumer, factory: str | None, market: bool, have: list[TopicPartition]
) -> list[TopicPartition]:
    """Assign the partitions of every wanted topic the broker has (new ones read from the
    beginning); returns the assignment. With ACLs the broker lists only the topics the
    user may describe."""
    cluster = await consumer._client.fetch_all_metadata()
    available = set(cluster.topics())
    tps = list(have)
    known = {tp.topic for tp in have}
    new = []
    for topic in tail_topics(factory, market, available):
        if topic in known or topic not in available:
            continue
        parts = cluster.partitions_for_topic(topic) or set()
        new += [TopicPartition(topic, p) for p in sorted(parts)]
    if new:
        tps += new
        consumer.assign(tps)
        await consumer.seek_to_beginning(*new)
    return tps


def run_tail(bootstrap: str, factory: str | None, lang: str, idle_exit_s: float | None,
             client_config: dict[str, Any] | None = None,
             cal: MarketCalendar = UTC_CALENDAR, market: bool = False) -> int:
    def emit(msg: AlertMessage) -> None:
        print(format_line(msg, lang, cal), flush=True)

    try:
        return asyncio.run(
            tail(bootstrap, factory, emit, idle_exit_s=idle_exit_s, client_config=client_config,
                 market=market)
        )
    except KeyboardInterrupt:
        return 0
