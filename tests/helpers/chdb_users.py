"""Run queries in the embedded engine (chDB) *as a factory's ClickHouse user*.

chDB cannot store users created by SQL (it has no writable user directory), but it loads
users, grants and row filters from a users.xml (``--config-file``) and enforces them like
a server. So a database built by an unrestricted process is opened by another process
whose only user, ``default``, is the factory's user as ``c2m db grant --users-xml``
renders it (``streams.clickhouse.access``: the same grants and row conditions as the SQL
it runs on servers). ``c2m_owner`` stands for the operator who ran the migrations: the
market views and ``sku_days_cut`` run with its rights (SQL SECURITY DEFINER), as they run
with the migrating user's on a server.

    python -m tests.helpers.chdb_users ENGINE_DIR MODE ARG QUERIES.json

MODE ``owner`` (ARG: the database) makes c2m_owner the definer of those views; MODE
``factory`` (ARG: the factory id) runs the queries as that factory. Prints a JSON list:
rows, or ``{"error": "<CLICKHOUSE_ERROR_NAME>"}`` per query.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
#: chDB logs in as default without a password: the factory user's password hash is that of ''
PASSWORD = ""
OWNER = ("<c2m_owner><password></password><networks><ip>::1</ip></networks>"
         "<profile>default</profile><quota>default</quota></c2m_owner>")
ADMIN_DEFAULT = (f"<default><password>{PASSWORD}</password><networks><ip>::/0</ip></networks>"
                 "<profile>default</profile><quota>default</quota>"
                 "<access_management>1</access_management></default>")


def users_xml(database: str, factory: str | None) -> str:
    from streams.clickhouse.access import USERS_XML_PROFILE, FactoryAccess

    who = (ADMIN_DEFAULT if factory is None
           else FactoryAccess(database, factory).users_xml(PASSWORD, name="default"))
    return (f"<clickhouse><profiles><default/>{USERS_XML_PROFILE}</profiles>"
            f"<users>{who}{OWNER}</users><quotas><default/></quotas></clickhouse>")


def _client(engine: Path, users: str) -> Any:
    from clickhouse_connect.driver._chdbclient import ChdbClient

    cfg = Path(tempfile.mkdtemp(prefix="chdb-users-"))
    (cfg / "users.xml").write_text(users)
    (cfg / "config.xml").write_text(
        "<clickhouse><user_directories><users_xml><path>"
        f"{cfg / 'users.xml'}</path></users_xml></user_directories></clickhouse>")
    return ChdbClient(path=str(engine), chdb_options={"config-file": str(cfg / "config.xml")})


def _run(client: Any, queries: list[str]) -> list[Any]:
    out: list[Any] = []
    for sql in queries:
        try:
            out.append([list(r) for r in client.query(sql).result_rows])
        except Exception as exc:
            m = re.search(r"\(([A-Z_]+)\)", str(exc))
            out.append({"error": m.group(1) if m else type(exc).__name__})
    return out


#: the views that run with their definer's rights (migrations 0010, 0011, 0014)
MARKET_VIEWS = ("market_demand", "market_rolling", "sku_days_cut")


def main() -> None:
    engine, mode, arg, qfile = Path(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
    queries = json.loads(Path(qfile).read_text())
    if mode == "owner":
        client = _client(engine, users_xml(arg, None))
        handed = _run(client, [
            f"ALTER TABLE {arg}.{v} MODIFY SQL SECURITY DEFINER DEFINER = c2m_owner"
            for v in MARKET_VIEWS])
        assert not any(isinstance(r, dict) for r in handed), handed
    else:
        database, factory = arg.split(":", 1)
        client = _client(engine, users_xml(database, factory))
    print(json.dumps(_run(client, queries), ensure_ascii=False, default=str))


def run(engine: Path, mode: str, arg: str, queries: list[str]) -> list[Any]:
    """Run ``queries`` in a fresh process (one chDB engine path per process)."""
    qfile = engine.parent / f"queries-{mode}.json"
    qfile.write_text(json.dumps(queries, ensure_ascii=False))
    out = subprocess.run(
        [sys.executable, "-m", "tests.helpers.chdb_users", str(engine), mode, arg, str(qfile)],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    result: list[Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def as_owner(engine: Path, database: str, queries: list[str]) -> list[Any]:
    """As the operator (and hand the market views to c2m_owner first)."""
    return run(engine, "owner", database, queries)


def as_factory(engine: Path, database: str, factory: str, queries: list[str]) -> list[Any]:
    return run(engine, "factory", f"{database}:{factory}", queries)


if __name__ == "__main__":
    main()
