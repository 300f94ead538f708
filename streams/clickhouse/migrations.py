"""Versioned ClickHouse migrations from ``deploy/clickhouse/NNNN_name.sql``.

Each file is applied once, in order, and recorded in ``{db}.schema_migrations``;
statements are written with ``IF NOT EXISTS`` / ``OR REPLACE`` so that re-running a
half-applied file is safe. ``{db}`` in a file is the configured database identifier.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from streams.errors import MigrationError

log = logging.getLogger(__name__)

_FILE = re.compile(r"(\d{4})_([a-z0-9_]+)\.sql")


def migrations_dir() -> Path:
    override = os.environ.get("C2M_MIGRATIONS_DIR")
    if override:
        return Path(override)
    return Path(__file__).resolve().parents[2] / "deploy" / "clickhouse"


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    statements: tuple[str, ...]


def _split(sql: str) -> list[str]:
    lines = [ln for ln in sql.splitlines() if not ln.lstrip().startswith("--")]
    return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]


def load(directory: Path | None = None) -> list[Migration]:
    directory = directory or migrations_dir()
    if not directory.is_dir():
        raise MigrationError(f"migrations directory {directory} not found")
    found = []
    for path in sorted(directory.glob("*.sql")):
        m = _FILE.fullmatch(path.name)
        if m is None:
            raise MigrationError(f"bad migration file name {path.name} (want NNNN_name.sql)")
        found.append(Migration(int(m[1]), m[2], tuple(_split(path.read_text("utf-8")))))
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise MigrationError("duplicate migration versions")
    return found


def migrate(client: Any, database: str, directory: Path | None = None) -> list[int]:
    """Apply pending migrations; return the versions applied. Idempotent."""
    client.command(f"CREATE DATABASE IF NOT EXISTS {database}")
    client.command(
        f"CREATE TABLE IF NOT EXISTS {database}.schema_migrations "
        "(version UInt32, name String, applied_at DateTime64(3, 'UTC') DEFAULT now64(3)) "
        "ENGINE = ReplacingMergeTree ORDER BY version"
    )
    done = {row[0] for row in client.query(
        f"SELECT version FROM {database}.schema_migrations"  # noqa: S608 - identifier only
    ).result_rows}
    applied = []
    for mig in load(directory):
        if mig.version in done:
            continue
        for stmt in mig.statements:
            try:
                client.command(stmt.replace("{db}", database))
            except Exception as exc:
                raise MigrationError(
                    f"migration {mig.version:04d}_{mig.name} failed: {exc}"
                ) from exc
        client.insert(
            f"{database}.schema_migrations", [[mig.version, mig.name]],
            column_names=["version", "name"],
        )
        applied.append(mig.version)
        log.info("applied migration %04d_%s", mig.version, mig.name)
    return applied
