"""The c2m-pulse exception tree: one root, with the Kafka coordinates where known.

    C2MError
    ├── ConfigError          bad settings (never includes secret values)
    ├── BrokerError          Kafka unreachable, embedded broker failed to start
    ├── SinkError            a ClickHouse write or read failed
    │   ├── SinkUnavailable  ClickHouse is down or overloaded: retry with backoff
    │   └── SinkRejected     ClickHouse refuses for good (schema, permissions): fail fast
    └── MigrationError       a schema migration failed

Each carries the exit code the ``c2m`` command ends with when it stops the process
(``EXIT_*`` below, documented in the README).

Bad *input* is not an exception here: it is data (``schemas.contract.ContractViolation``
becomes a dead letter) and never stops a partition.
"""

from __future__ import annotations

from typing import ClassVar

#: exit codes of the ``c2m`` command
EXIT_OK = 0
EXIT_FAILED = 1  # the command ran and found nothing to do (e.g. a brief with no demand)
EXIT_USAGE = 2  # a mistake on the command line
EXIT_CONFIG = 3  # bad settings, or a database built with other ones
EXIT_UNREACHABLE = 4  # Kafka or ClickHouse cannot be reached
EXIT_REFUSED = 5  # ClickHouse refused a query or a write (schema, permissions, SQL)


class C2MError(Exception):
    """Root of every c2m-pulse error. Carries (topic, partition, offset) when relevant."""

    exit_code: ClassVar[int] = EXIT_FAILED

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

    exit_code = EXIT_CONFIG


class BrokerError(C2MError):
    """Kafka could not be reached, or the embedded broker did not start."""

    exit_code = EXIT_UNREACHABLE


class SinkError(C2MError):
    """A ClickHouse operation failed."""

    exit_code = EXIT_UNREACHABLE


class SinkUnavailable(SinkError):
    """ClickHouse is unavailable; the operation can be retried."""


class SinkRejected(SinkError):
    """ClickHouse refused the operation for a reason retrying cannot fix: a table or
    column missing, a type mismatch, a read-only user, a bad query."""

    exit_code = EXIT_REFUSED


class MigrationError(C2MError):
    """A ClickHouse migration failed."""

    exit_code = EXIT_REFUSED
