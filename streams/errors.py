"""The c2m-pulse exception tree: one root, with the Kafka coordinates where known.

    C2MError
    ├── ConfigError          bad settings (never includes secret values)
    ├── BrokerError          Kafka unreachable, embedded broker failed to start
    ├── SinkError            a ClickHouse write or read failed
    │   └── SinkUnavailable  ClickHouse is down or refusing: retry with backoff
    └── MigrationError       a schema migration failed

Bad *input* is not an exception here: it is data (``schemas.contract.ContractViolation``
becomes a dead letter) and never stops a partition.
"""

from __future__ import annotations


class C2MError(Exception):
    """Root of every c2m-pulse error. Carries (topic, partition, offset) when relevant."""

    def __init__(
        self,
        message: str,
        *,
        topic: str | None = None,
        partition: int | None = None,
        offset: int | None = None,
    ) -> None:
        super().__init__(message)
        self.topic = topic
        self.partition = partition
        self.offset = offset

    def __str__(self) -> str:
        base = super().__str__()
        where = [
            f"{name}={value}"
            for name, value in (
                ("topic", self.topic),
                ("partition", self.partition),
                ("offset", self.offset),
            )
            if value is not None
        ]
        return f"{base} ({', '.join(where)})" if where else base


class ConfigError(C2MError):
    """The settings are inconsistent or invalid."""


class BrokerError(C2MError):
    """Kafka could not be reached, or the embedded broker did not start."""


class SinkError(C2MError):
    """A ClickHouse operation failed."""


class SinkUnavailable(SinkError):
    """ClickHouse is unavailable; the operation can be retried."""


class MigrationError(C2MError):
    """A ClickHouse migration failed."""
