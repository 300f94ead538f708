"""``c2m alerts tail``: what a factory runs to follow its alerts (a plain Kafka consumer).

With ``--factory F`` it reads only F's own topic ``factory.<F>.restock-alerts``
(``streams.core.tenancy``; what a Kafka ACL on the prefix ``factory.<F>.`` allows), plus
the market topic ``factory.demand-signals`` with ``--market``; without a factory (an
operator) every factory's topic, the shared ``factory.restock-alerts`` if it exists and
the market topic. It reads from the beginning (the current state first), without a
consumer group, and prints each alert version once, newest version per alert_id only: a
re-delivered message is not printed twice. A topic that does not exist yet (a factory
without alerts so far) is picked up once it appears.

Before that it reads the catalog (``shop.products``) and warns on stderr when the factory
is not in it; while following, it stops with one line (``BrokerError``, exit code 4) when
no broker accepts a connection any more (e.g. the demo that brought it stopped).
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError
from pydantic import ValidationError

from schemas.alerts import TOPIC_DEMAND_SIGNALS, TOPIC_RESTOCK_ALERTS, AlertMessage
from schemas.contract import TOPIC_PRODUCTS
from streams.core.calendar import UTC_CALENDAR, MarketCalendar
from streams.core.tenancy import restock_topic, restock_topic_component
from streams.errors import BrokerError
from streams.kafka.topics import bootstrap_addresses, reachable

#: a broker that refuses connections this long is gone (the stop of a demo, not a blip)
BROKER_GONE_S = 4.0
#: how often a quiet tail checks that the broker is still there
_PROBE_EVERY_S = 1.0

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


def catalog_factories(values: list[tuple[bytes | None, bytes | None]]) -> set[str]:
    """Factory ids of the products a compacted ``shop.products`` log holds, from its
    (key, value) records in order: a null value deletes its SKU."""
    by_sku: dict[bytes | str, str] = {}
    for key, value in values:
        if value is None:
            if key is not None:
                by_sku.pop(key, None)
            continue
        try:
            doc = orjson.loads(value)
            sku, fid = doc["sku"], doc["factory_id"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            continue
        if isinstance(fid, str) and fid:
            by_sku[key if key is not None else str(sku)] = fid
    return set(by_sku.values())


async def _read_catalog(consumer: AIOKafkaConsumer, timeout_s: float = 10.0) -> set[str] | None:
    """Factory ids in ``shop.products`` (read to its end now), None if it cannot be read."""
    parts = consumer.partitions_for_topic(TOPIC_PRODUCTS)
    if not parts:
        return None
    tps = [TopicPartition(TOPIC_PRODUCTS, p) for p in sorted(parts)]
    consumer.assign(tps)
    await consumer.seek_to_beginning(*tps)
    ends = await consumer.end_offsets(tps)
    records: list[tuple[bytes | None, bytes | None]] = []
    deadline = time.monotonic() + timeout_s
    while not await _caught_up(consumer, ends):
        if time.monotonic() > deadline:
            return None
        batch = await consumer.getmany(*tps, timeout_ms=500, max_records=5000)
        for tp in tps:
            records += [(r.key, r.value) for r in batch.get(tp, [])]
    return catalog_factories(records)


async def _caught_up(consumer: AIOKafkaConsumer, ends: dict[TopicPartition, int]) -> bool:
    """Every partition read up to ``ends`` (False while a position is not known yet)."""
    for tp, end in ends.items():
        try:
            if await asyncio.wait_for(consumer.position(tp), 1.0) < end:
                return False
        except TimeoutError:
            return False
    return True


def _warn(text: str) -> None:
    print(f"c2m: warning: {text}", file=sys.stderr, flush=True)


async def tail(
    bootstrap: str,
    factory: str | None,
    emit: Callable[[AlertMessage], None],
    *,
    idle_exit_s: float | None = None,
    client_config: dict[str, Any] | None = None,
    warn: Callable[[str], None] = _warn,
    market: bool = False,
) -> int:
    """Print alerts until interrupted (or ``idle_exit_s`` without a message). Returns count.
    BrokerError when the broker goes away."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest",
        **(client_config or {}),
    )
    await consumer.start()
    follower = AlertFollower(factory)
    shown = 0
    try:
        # every topic's metadata first: once partitions are assigned, aiokafka asks only
        # for the assigned topics
        await consumer._client.force_metadata_update()
        if factory:
            # (with ACLs a factory cannot read the catalog: then nothing is said)
            known = await _read_catalog(consumer)
            if known is not None and factory not in known:
                listed = ", ".join(sorted(known)[:8]) + (", ..." if len(known) > 8 else "")
                warn(f"factory {factory!r} is not in the catalog ({TOPIC_PRODUCTS} lists "
                     + (listed or "no products yet") + "): following anyway, its alerts "
                     "will show once it has products")
        tps = await _find_topics(consumer, factory, market, [])
        if not tps and not factory:
            raise BrokerError(
                f"no alert topics on {bootstrap}: is a c2m worker (or c2m demo) running?"
            )
        ends: dict[TopicPartition, int] | None = (
            await consumer.end_offsets(tps) if tps else {})
        last = looked = time.monotonic()
        gone = _BrokerWatch(bootstrap, consumer)
        while idle_exit_s is None or time.monotonic() - last < idle_exit_s:
            if time.monotonic() - looked > _LOOK_AGAIN_S:  # topics created since
                looked = time.monotonic()
                try:
                    tps = await _find_topics(consumer, factory, market, tps)
                except KafkaError:  # no metadata: the broker may be gone (BrokerError
                    gone.check()    # once no broker has answered for BROKER_GONE_S)
            if tps:
                batch = await consumer.getmany(timeout_ms=500, max_records=1000)
            else:  # the factory has had no alert yet: its topic does not exist
                await asyncio.sleep(0.5)
                batch = {}
            records = [r for rs in batch.values() for r in rs]
            if records:
                last = time.monotonic()
            else:
                gone.check()
            if ends is not None and not records and await _caught_up(consumer, ends):
                ends = None  # caught up with what was there at the start
                if not shown and idle_exit_s is None:
                    warn(f"no alerts{' for ' + factory if factory else ''} yet; waiting "
                         "for new ones (Ctrl-C to stop)")
            records.sort(key=lambda r: (r.timestamp, r.topic, r.partition, r.offset))
            for r in records:
                msg = follower.accept(r.value)
                if msg is not None:
                    emit(msg)
                    shown += 1
    finally:
        # with the broker gone, aiokafka's fetcher task ends its stop with CancelledError
        with contextlib.suppress(asyncio.CancelledError, TimeoutError):
            await asyncio.wait_for(consumer.stop(), 10)
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


class _BrokerWatch:
    """Raises BrokerError once no broker (the bootstrap servers and those the cluster
    metadata names) has accepted a TCP connection for ``BROKER_GONE_S``."""

    def __init__(self, bootstrap: str, consumer: AIOKafkaConsumer) -> None:
        self.bootstrap = bootstrap
        self.consumer = consumer
        self.addresses = bootstrap_addresses(bootstrap)
        self.next_probe = time.monotonic() + _PROBE_EVERY_S
        self.failing_since: float | None = None

    def check(self) -> None:
        now = time.monotonic()
        if now < self.next_probe:
            return
        self.next_probe = now + _PROBE_EVERY_S
        brokers = [(b.host, b.port) for b in self.consumer._client.cluster.brokers()]
        why = reachable(list(dict.fromkeys(self.addresses + brokers)), timeout=0.5)
        if why is None:
            self.failing_since = None
            return
        self.failing_since = self.failing_since or now
        if now - self.failing_since >= BROKER_GONE_S:
            raise BrokerError(
                f"lost the broker at {self.bootstrap} ({why}): did the demo (or Kafka) "
                "stop? start it again, then run c2m alerts tail again"
            )


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
