"""Topic names and creation. Creation is idempotent (existing topics are left alone)."""

from __future__ import annotations

import asyncio
import logging
import socket
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
from streams.backoff import poll_until
from streams.core.tenancy import restock_topic
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


_ALERT_RETENTION_DAYS = 30


def topic_specs(
    shared_restock: bool = False, alert_retention_days: int = _ALERT_RETENTION_DAYS
) -> list[TopicSpec]:
    """The topics created at start. Restock alerts go to one topic per factory, created
    on its first alert (``FactoryTopics``); the shared ``factory.restock-alerts`` only
    with ``shared_restock`` (C2M_SHARED_RESTOCK_TOPIC, docs/SECURITY.md)."""
    alerts_ms = str(alert_retention_days * 24 * 3_600_000)
    return [
        TopicSpec(TOPIC_ORDERS, None, {"retention.ms": _WEEK_MS}),
        TopicSpec(TOPIC_PAGEVIEWS, None, {"retention.ms": _WEEK_MS}),
        TopicSpec(TOPIC_LOGISTICS, None, {"retention.ms": _WEEK_MS}),
        TopicSpec(TOPIC_PRODUCTS, 1, {"cleanup.policy": "compact", "retention.ms": "-1"}),
        TopicSpec(TOPIC_DEAD_LETTER, 1, {"retention.ms": str(30 * 24 * 3_600_000)}),
        *([TopicSpec(TOPIC_RESTOCK_ALERTS, None, {"retention.ms": alerts_ms})]
          if shared_restock else []),
        TopicSpec(TOPIC_DEMAND_SIGNALS, None, {"retention.ms": alerts_ms}),
        TopicSpec(TOPIC_SINK, 1, {"retention.ms": _WEEK_MS}),
    ]


def factory_topic_spec(
    factory_id: str, partitions: int, retention_days: int = _ALERT_RETENTION_DAYS
) -> TopicSpec:
    """A factory's restock-alert topic (``streams.core.tenancy.restock_topic``)."""
    return TopicSpec(restock_topic(factory_id), partitions,
                     {"retention.ms": str(retention_days * 24 * 3_600_000)})


class FactoryTopics:
    """Creates each factory's restock-alert topic the first time an alert goes to it,
    with the configured partitions and retention (existing topics are left alone)."""

    def __init__(
        self, bootstrap: str, partitions: int, retention_days: int = _ALERT_RETENTION_DAYS,
        client_config: dict[str, Any] | None = None,
    ) -> None:
        self.bootstrap = bootstrap
        self.partitions = partitions
        self.retention_days = retention_days
        self.client_config = dict(client_config or {})
        self.known: set[str] = set()
        self.created: list[str] = []
        self._lock = asyncio.Lock()

    async def ensure(self, factory_id: str) -> str:
        """The factory's topic name, created first if the broker does not have it.
        Raises BrokerError when the broker cannot be asked or refuses."""
        spec = factory_topic_spec(factory_id, self.partitions, self.retention_days)
        if spec.name in self.known:
            return spec.name
        from aiokafka.admin import AIOKafkaAdminClient, NewTopic
        from aiokafka.errors import KafkaError, TopicAlreadyExistsError

        async with self._lock:
            if spec.name in self.known:
                return spec.name
            admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap,
                                        client_id="c2m-alerts-admin", **self.client_config)
            try:
                await admin.start()
                if spec.name not in set(await admin.list_topics()):
                    try:
                        resp = await admin.create_topics([NewTopic(
                            spec.name, spec.partitions or self.partitions, 1,
                            topic_configs=spec.config)])
                        for _topic, code, *_rest in getattr(resp, "topic_errors", ()):
                            if code not in (0, TopicAlreadyExistsError.errno):
                                raise BrokerError(
                                    f"the broker refused to create {spec.name} (error {code})")
                        self.created.append(spec.name)
                        log.info("created topic %s", spec.name)
                    except TopicAlreadyExistsError:
                        pass
            except KafkaError as exc:
                raise BrokerError(f"cannot create {spec.name}: {type(exc).__name__}") from exc
            finally:
                await admin.close()
            self.known.add(spec.name)
            return spec.name

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
    why = "not tried"

    def attempt(remaining_s: float) -> bool | None:
        nonlocal why
        got = reachable(addresses, timeout=max(min(remaining_s, 2.0), 0.1))
        if got is None:
            return True
        why = got
        return None

    if poll_until(attempt, timeout, 0.25) is None:
        raise BrokerError(
            f"cannot reach Kafka at {bootstrap} ({why}, waited {timeout:.0f} s): start "
            "the broker or fix C2M_KAFKA_BOOTSTRAP (unset it to use the embedded one)"
        )


def ensure_topics(
    bootstrap: str, partitions: int, client_config: dict[str, Any] | None = None,
    *, shared_restock: bool = False, alert_retention_days: int = _ALERT_RETENTION_DAYS,
) -> list[str]:
    """Create missing topics; return the names created."""
    from kafka.admin import KafkaAdminClient, NewTopic
    from kafka.errors import (
        ClusterAuthorizationFailedError,
        KafkaError,
        TopicAlreadyExistsError,
        TopicAuthorizationFailedError,
    )

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
            for s in topic_specs(shared_restock, alert_retention_days)
            if s.name not in existing
        ]
        created = []
        for topic in wanted:
            try:
                admin.create_topics([topic])
                created.append(topic.name)
            except TopicAlreadyExistsError:
                pass
            except (TopicAuthorizationFailedError, ClusterAuthorizationFailedError):
                # with ACLs a user sees (and may create) only its own topics, e.g. a shop
                # only shop.*: the others are the operator's, created beforehand
                log.info("topic %s not created here: not authorized", topic.name)
        if created:
            log.info("created topics %s", created)
        return created
    finally:
        admin.close()

