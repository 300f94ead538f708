"""Versioned ClickHouse migrations from ``deploy/clickhouse/NNNN_name.sql``.

Each file is applied once, in order, and recorded in ``{db}.schema_migrations``;
statements are written with ``IF NOT EXISTS`` / ``OR REPLACE`` so that re-running a
half-applied file is safe. ``{db}`` in a file is the configured database identifier,
``{tz}`` the market time zone. A migration that moves data has a Python step
(``UPGRADES``) run after its statements, written to be safe to run again.

The time zone is part of the data (daily windows start at local midnight), so a database
is built in one zone for good: the first migration records it in ``{db}.database_info``
and ``check_timezone`` refuses to open the database in another one. A database built
before time zones existed holds UTC windows.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from streams.errors import ConfigError, MigrationError

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


def database_timezone(client: Any, database: str) -> str | None:
    """The zone the database's windows are in: as recorded, 'UTC' for a database with
    demand data from before time zones, None for a new one."""
    recorded = client.query(
        f"SELECT argMax(value, updated_at), count() FROM {database}.database_info "  # noqa: S608
        "WHERE name = 'timezone'"
    ).result_rows
    if recorded and recorded[0][1]:
        return str(recorded[0][0])
    legacy = client.query(
        "SELECT count() FROM system.tables WHERE database = {d:String} AND name = 'demand_state'",
        parameters={"d": database},
    ).result_rows[0][0]
    if legacy and client.query(
        f"SELECT count() > 0 FROM {database}.demand_state"  # noqa: S608 - identifier only
    ).result_rows[0][0]:
        return "UTC"
    return None


def check_timezone(client: Any, database: str, timezone: str) -> None:
    """Refuse to open a database built in another zone; record the zone of a new one."""
    have = database_timezone(client, database)
    if have is None:
        client.insert(
            f"{database}.database_info", [["timezone", timezone]], column_names=["name", "value"]
        )
        return
    if have != timezone:
        raise ConfigError(
            f"ClickHouse database {database} holds windows in time zone {have}, but "
            f"C2M_TIMEZONE is {timezone}: set C2M_TIMEZONE={have}, or use a new database "
            "(C2M_CLICKHOUSE_DATABASE) and replay the topics into it (a zone cannot be "
            "changed in place: every daily window would move)"
        )
    if not client.query(
        f"SELECT count() FROM {database}.database_info WHERE name = 'timezone'"  # noqa: S608
    ).result_rows[0][0]:
        client.insert(
            f"{database}.database_info", [["timezone", timezone]], column_names=["name", "value"]
        )


def migrate(
    client: Any, database: str, directory: Path | None = None, *, timezone: str = "UTC"
) -> list[int]:
    """Apply pending migrations; return the versions applied. Idempotent. Raises
    ConfigError when the database was built in another time zone."""
    client.command(f"CREATE DATABASE IF NOT EXISTS {database}")
    client.command(
        f"CREATE TABLE IF NOT EXISTS {database}.schema_migrations "
        "(version UInt32, name String, applied_at DateTime64(3, 'UTC') DEFAULT now64(3)) "
        "ENGINE = ReplacingMergeTree ORDER BY version"
    )
    client.command(
        f"CREATE TABLE IF NOT EXISTS {database}.database_info "
        "(name String, value String, updated_at DateTime64(3, 'UTC') DEFAULT now64(3)) "
        "ENGINE = ReplacingMergeTree(updated_at) ORDER BY name"
    )
    check_timezone(client, database, timezone)
    done = {row[0] for row in client.query(
        f"SELECT version FROM {database}.schema_migrations"  # noqa: S608 - identifier only
    ).result_rows}
    applied = []
    for mig in load(directory):
        if mig.version in done:
            continue
        for stmt in mig.statements:
            try:
                client.command(stmt.replace("{db}", database).replace("{tz}", timezone))
            except Exception as exc:
                raise MigrationError(
                    f"migration {mig.version:04d}_{mig.name} failed: {exc}"
                ) from exc
        upgrade = UPGRADES.get(mig.version)
        if upgrade is not None:
            try:
                upgrade(client, database)
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


# ---------------------------------------------------------------- data-moving steps
_SKU_KEY = "hour_start, sku, source_topic, source_partition"


def _sorting_key(client: Any, database: str, table: str) -> str | None:
    rows = client.query(
        "SELECT sorting_key FROM system.tables WHERE database = {d:String} AND name = {t:String}",
        parameters={"d": database, "t": table},
    ).result_rows
    return str(rows[0][0]) if rows else None


def upgrade_0007(client: Any, database: str) -> None:
    """sku_state sorted by hour (restores and refreshes read hour ranges), then the
    serving tables filled from what the database already holds. Safe to run again: the
    re-sort is skipped once done, and refilled rows replace equal ones."""
    from streams.clickhouse import serving

    db = database
    if _sorting_key(client, db, "sku_state") != _SKU_KEY:
        client.command(f"DROP TABLE IF EXISTS {db}.sku_state_resort")
        client.command(
            f"CREATE TABLE {db}.sku_state_resort AS {db}.sku_state "
            "ENGINE = ReplacingMergeTree(version) PARTITION BY toYYYYMM(hour_start) "
            f"ORDER BY ({_SKU_KEY})"
        )
        client.command(f"INSERT INTO {db}.sku_state_resort SELECT * FROM {db}.sku_state")  # noqa: S608
        client.command(f"EXCHANGE TABLES {db}.sku_state AND {db}.sku_state_resort")
    client.command(f"DROP TABLE IF EXISTS {db}.sku_state_resort")
    # the schema of 0007: contributors (shop_cells, demand_cells.shops) come with 0010
    serving.rebuild(client, db, database_timezone(client, db) or "UTC", shops=False)


def upgrade_0011(client: Any, database: str) -> None:
    """The stored market fold filled from the cells already held (every window and the
    rolling horizons, for the k recorded in pipeline_settings). Safe to run again."""
    from streams.clickhouse import market

    market.ensure_k(client, database)


UPGRADES = {7: upgrade_0007, 11: upgrade_0011}
