"""Topic names and creation. Creation is idempotent (existing topics are left alone)."""

from __future__ import annotations

import logging
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


def ensure_topics(
    bootstrap: str, partitions: int, client_config: dict[str, Any] | None = None
) -> list[str]:
    """Create missing topics; return the names created."""
    from kafka.admin import KafkaAdminClient, NewTopic
    from kafka.errors import KafkaError, TopicAlreadyExistsError

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

