"""Topic names and creation. Creation is idempotent (existing topics are left alone)."""

from __future__ import annotations

import logging
import socket
import time
from dataclasses import dataclass
from typing import Any

from schemas.alerts import TOPIC_DEMAND_SIGNALS, TOPIC_RESTOCK_ALERTS
from schemas.contract import (
    TOPIC_DEAD_LETTER,
    TOPIC_LOGISTICS,
    TOPIC_ORDERS,
    TOPIC_PAGEVIEWS,
    TOPIC_PRODUCTS,
)
from streams.errors import BrokerError

log = logging.getLogger(__name__)

#: Flush batches from workers to the single writer (C2M_SINK=kafka). One partition: one
#: total order of flushes, read by one writer.
TOPIC_SINK = "c2m.sink"

# Retention is set explicitly: some brokers (Tansu) report only configs set at creation.
_WEEK_MS = str(7 * 24 * 3_600_000)


@dataclass(frozen=True, slots=True)
class TopicSpec:
    name: str
    partitions: int | None  # None: use the configured default
    config: dict[str, str]


def topic_specs() -> list[TopicSpec]:
    return [
        TopicSpec(TOPIC_ORDERS, None, {"retention.ms": _WEEK_MS}),
        TopicSpec(TOPIC_PAGEVIEWS, None, {"retention.ms": _WEEK_MS}),
        TopicSpec(TOPIC_LOGISTICS, None, {"retention.ms": _WEEK_MS}),
        TopicSpec(TOPIC_PRODUCTS, 1, {"cleanup.policy": "compact", "retention.ms": "-1"}),
        TopicSpec(TOPIC_DEAD_LETTER, 1, {"retention.ms": str(30 * 24 * 3_600_000)}),
        TopicSpec(TOPIC_RESTOCK_ALERTS, None, {"retention.ms": str(30 * 24 * 3_600_000)}),
        TopicSpec(TOPIC_DEMAND_SIGNALS, None, {"retention.ms": str(30 * 24 * 3_600_000)}),
        TopicSpec(TOPIC_SINK, 1, {"retention.ms": _WEEK_MS}),
    ]


#: how long a command waits for Kafka's TCP port before it says it cannot reach it
CONNECT_TIMEOUT_S = 5.0


def bootstrap_addresses(bootstrap: str) -> list[tuple[str, int]]:
    """``host:port[,host:port]`` as (host, port) pairs; BrokerError if malformed."""
    out = []
    for part in bootstrap.split(","):
        host, sep, port = part.strip().rpartition(":")
        if not sep or not host or not port.isdigit():
            raise BrokerError(f"C2M_KAFKA_BOOTSTRAP={bootstrap!r} is not valid: expected "
                              "host:port[,host:port], e.g. 127.0.0.1:9092")
        out.append((host.strip("[]"), int(port)))
    return out


def reachable(addresses: list[tuple[str, int]], timeout: float = 1.0) -> str | None:
    """None if one of ``addresses`` accepts a TCP connection, else why the last did not."""
    why = "no address"
    for host, port in addresses:
        try:
            with socket.create_connection((host, port), timeout=timeout):
                return None
        except TimeoutError:
            why = "timed out"
        except OSError as exc:
            why = (exc.strerror or type(exc).__name__).lower()
    return why


def probe_kafka(bootstrap: str, timeout: float = CONNECT_TIMEOUT_S) -> None:
    """BrokerError (one line, within ``timeout``) unless a bootstrap server accepts a TCP
    connection. Kafka clients would retry for half a minute and log every attempt."""
    addresses = bootstrap_addresses(bootstrap)
    deadline = time.monotonic() + timeout
    while True:
        why = reachable(addresses, timeout=max(min(deadline - time.monotonic(), 2.0), 0.1))
        if why is None:
            return
        if time.monotonic() >= deadline:
            raise BrokerError(
                f"cannot reach Kafka at {bootstrap} ({why}, waited {timeout:.0f} s): start "
                "the broker or fix C2M_KAFKA_BOOTSTRAP (unset it to use the embedded one)"
            )
        time.sleep(0.25)


def ensure_topics(
    bootstrap: str, partitions: int, client_config: dict[str, Any] | None = None
) -> list[str]:
    """Create missing topics; return the names created."""
    from kafka.admin import KafkaAdminClient, NewTopic
    from kafka.errors import KafkaError, TopicAlreadyExistsError

    probe_kafka(bootstrap)
    cfg = {k: v for k, v in (client_config or {}).items() if k != "ssl_context"}
    if client_config and "ssl_context" in client_config:
        cfg["ssl_context"] = client_config["ssl_context"]
    try:
        admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="c2m-admin", **cfg)
    except KafkaError as exc:
        raise BrokerError(f"cannot reach Kafka at {bootstrap}: {exc}") from exc
    try:
        existing = set(admin.list_topics())
        wanted = [
            NewTopic(s.name, s.partitions or partitions, 1, topic_configs=s.config)
            for s in topic_specs()
            if s.name not in existing
        ]
        created = []
        for topic in wanted:
            try:
                admin.create_topics([topic])
                created.append(topic.name)
            except TopicAlreadyExistsError:
                pass
        if created:
            log.info("created topics %s", created)
        return created
    finally:
        admin.close()

