"""``c2m query``: one read-only statement against the configured ClickHouse.

One statement per call: ``SELECT 1; SELECT 2`` is refused with a message (results of two
statements do not share a header, and ClickHouse's HTTP interface takes one statement
anyway). A trailing ``;`` is fine.

With the embedded ClickHouse (chDB) only one process may open the data directory: while a
``c2m demo`` or ``c2m worker`` runs, the query goes to that process's web server
(``POST /api/query``, loopback only), which runs it read-only on its own engine.
"""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from typing import Any, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from streams.errors import EXIT_USAGE, C2MError, SinkRejected, SinkUnavailable

T = TypeVar("T")


class QueryInterrupted(KeyboardInterrupt):
    """Ctrl-C while the embedded ClickHouse ran a command's query: the process must leave
    without finalising (``os._exit``), since tearing chDB down under a query, or after
    one cut short, crashes it."""

#: ClickHouse settings of a ``c2m query`` that opens ClickHouse itself. (A worker runs
#: the query on a session of its own made read-only once: with chDB, per-call settings
#: of a statement that is not a SELECT are SET on the session and restored afterwards,
#: and nothing can be restored once ``readonly`` is on.)
READONLY_SETTINGS: dict[str, Any] = {"readonly": 1}
#: a query through a worker holds its ClickHouse thread (and so its flushes) this long at most
WORKER_QUERY_SECONDS = 30
#: rows a worker sends back for one query (the rest is cut, and the answer says so)
MAX_ROWS = 100_000


class StatementError(C2MError):
    """The text is not exactly one statement."""

    exit_code = EXIT_USAGE  # the command line is wrong


def split_statements(sql: str) -> list[str]:
    """The statements of ``sql`` split at ``;`` outside strings (also ``$$...$$``), quoted
    names and comments (empty ones, e.g. after a trailing ``;``, dropped)."""
    out: list[str] = []
    buf: list[str] = []
    meaningful = False  # the current statement has something besides blanks and comments
    i, n = 0, len(sql)
    while i < n:
        c = sql[i]
        if c in "'\"`":
            j = i + 1
            while j < n:
                if sql[j] == "\\":
                    j += 2
                    continue
                if sql[j] == c:
                    if j + 1 < n and sql[j + 1] == c:  # doubled quote inside
                        j += 2
                        continue
                    break
                j += 1
            buf.append(sql[i:j + 1])
            meaningful = True
            i = j + 1
            continue
        if sql.startswith("$$", i):  # a heredoc string: $$...$$, no escapes
            j = sql.find("$$", i + 2)
            j = n if j < 0 else j + 2
            buf.append(sql[i:j])
            meaningful = True
            i = j
            continue
        if sql.startswith("--", i) or c == "#":
            j = sql.find("\n", i)
            j = n if j < 0 else j
            buf.append(sql[i:j])
            i = j
            continue
        if sql.startswith("/*", i):
            j = sql.find("*/", i + 2)
            j = n if j < 0 else j + 2
            buf.append(sql[i:j])
            i = j
            continue
        if c == ";":
            if meaningful:
                out.append("".join(buf).strip())
            buf, meaningful = [], False
            i += 1
            continue
        if not c.isspace():
            meaningful = True
        buf.append(c)
        i += 1
    if meaningful:
        out.append("".join(buf).strip())
    return out


def one_statement(sql: str) -> str:
    """The single statement of ``sql``, or StatementError saying what to do."""
    statements = split_statements(sql)
    if not statements:
        raise StatementError("no SQL statement given: e.g. c2m query \"SELECT 1\"")
    if len(statements) > 1:
        raise StatementError(
            f"c2m query runs one statement at a time, got {len(statements)}; run each "
            "separately, e.g. c2m query \"" + statements[0][:60] + "\""
        )
    return statements[0]


@dataclass
class QueryResult:
    columns: list[str]
    rows: list[list[Any]]
    truncated: bool = False
    #: the (masked) ClickHouse URL of the worker that ran it, when it came from one
    clickhouse: str | None = None


def _plain(v: Any) -> Any:
    """A value as ``c2m query`` prints it, kept JSON-safe for the trip from a worker."""
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    return str(v)


def _clock_text(value: datetime, zone: tzinfo, digits: int | None) -> str:
    """``value`` as ClickHouse's ``toString`` writes it in ``zone``: local wall time, no
    offset, ``digits`` decimals for a DateTime64 (None: a DateTime). What is printed can
    be pasted back into a WHERE clause on the same column."""
    if value.tzinfo is None:  # clickhouse-connect hands UTC instants out naive
        value = value.replace(tzinfo=UTC)
    local = value.astimezone(zone)
    text = local.strftime("%Y-%m-%d %H:%M:%S")
    if digits:  # Python keeps microseconds: a DateTime64(7..9) ends in zeros
        text += "." + f"{local.microsecond:06d}{'0' * 3}"[:digits]
    return text


def _in_column_zone(value: Any, ch_type: Any, default_zone: tzinfo) -> Any:
    """``value`` of ClickHouse type ``ch_type`` with every DateTime/DateTime64 in it (also
    inside Nullable, Array, Tuple, Map) written as ``toString`` writes it: in the type's
    time zone, else ``default_zone`` (the session's). Other values as they are."""
    from clickhouse_connect.datatypes.container import Array, Map, Tuple
    from clickhouse_connect.datatypes.temporal import DateTime64, DateTimeBase

    if value is None:
        return None
    if isinstance(ch_type, DateTimeBase):
        if not isinstance(value, datetime):
            return value
        digits = ch_type.scale if isinstance(ch_type, DateTime64) else None
        return _clock_text(value, ch_type.tzinfo or default_zone, digits)
    if isinstance(ch_type, Array) and isinstance(value, (list, tuple)):
        return [_in_column_zone(x, ch_type.element_type, default_zone) for x in value]
    if isinstance(ch_type, Tuple) and isinstance(value, (list, tuple)) \
            and len(value) == len(ch_type.element_types):
        return tuple(_in_column_zone(x, t, default_zone)
                     for x, t in zip(value, ch_type.element_types, strict=True))
    if isinstance(ch_type, Map) and isinstance(value, dict):
        return {_in_column_zone(k, ch_type.key_type, default_zone):
                _in_column_zone(v, ch_type.value_type, default_zone) for k, v in value.items()}
    return value


def _has_time(ch_type: Any) -> bool:
    from clickhouse_connect.datatypes.container import Array, Map, Tuple
    from clickhouse_connect.datatypes.temporal import DateTimeBase

    if isinstance(ch_type, DateTimeBase):
        return True
    if isinstance(ch_type, Array):
        return _has_time(ch_type.element_type)
    if isinstance(ch_type, Tuple):
        return any(_has_time(t) for t in ch_type.element_types)
    if isinstance(ch_type, Map):
        return _has_time(ch_type.key_type) or _has_time(ch_type.value_type)
    return False


def _column_types(
    client: Any, statement: str, got: Sequence[Any], settings: dict[str, Any] | None,
) -> list[Any]:
    """The ClickHouse types of the statement's columns, with their time zones.

    The Native format that clickhouse-connect reads names a top-level ``DateTime('zone')``
    column plain ``DateTime`` (ClickHouse does so for old clients, chDB always), and its
    values come back in UTC: a market-time column (``window_start``, ``toTimeZone(...)``)
    would print 8 hours off. For such a column the types are asked of ClickHouse
    (``DESCRIBE``, which plans the query but does not run it); a statement it cannot
    describe (``SHOW ...``) keeps the types it came with."""
    from clickhouse_connect.datatypes.registry import get_from_name
    from clickhouse_connect.datatypes.temporal import DateTimeBase

    types = list(got)
    if not any(isinstance(t, DateTimeBase) and t.tzinfo is None for t in types):
        return types
    try:
        described = client.query(f"DESCRIBE TABLE (\n{statement}\n)",
                                 settings=settings).result_rows
        named = [get_from_name(str(row[1])) for row in described]
    except Exception:  # not a SELECT (SHOW ...): the types it came with
        return types
    return named if len(named) == len(types) else types


def _session_zone(client: Any) -> tzinfo:
    """The zone ClickHouse writes a DateTime without one in (``timezone()``)."""
    zone = getattr(client, "server_tz", None)
    if isinstance(zone, tzinfo):
        return zone
    try:
        return ZoneInfo(str(zone)) if zone else UTC
    except (ValueError, ZoneInfoNotFoundError):
        return UTC


def run_readonly(
    client: Any, sql: str, max_rows: int | None = None,
    settings: dict[str, Any] | None = READONLY_SETTINGS,
) -> QueryResult:
    """Run one statement read-only (``settings``; None: the client's session already is);
    SinkRejected (with ClickHouse's error) if refused."""
    from streams.clickhouse.errors import is_refused
    from streams.problems import query_problem

    statement = one_statement(sql)
    try:
        result = client.query(statement, settings=settings)
    except Exception as exc:
        if is_refused(exc) or _query_refused(exc):
            raise SinkRejected(query_problem(exc, statement)) from exc
        raise SinkUnavailable(f"ClickHouse query failed: {query_problem(exc, statement)}") \
            from exc
    rows = result.result_rows
    truncated = max_rows is not None and len(rows) > max_rows
    if truncated:
        rows = rows[:max_rows]
    types = list(result.column_types or ())
    if rows and len(types) == len(result.column_names) and any(_has_time(t) for t in types):
        types = _column_types(client, statement, types, settings)
        zone = _session_zone(client)
        rows = [[_in_column_zone(v, t, zone) for v, t in zip(r, types, strict=True)]
                for r in rows]
    return QueryResult(list(result.column_names), [[_plain(v) for v in r] for r in rows],
                       truncated)


#: ClickHouse error codes of a query that may pass on another try (the server or the
#: network, a limit of the moment); a query failing with any other code was refused,
#: also one over the time limit (TIMEOUT_EXCEEDED: the same query would be again; the
#: pipeline's writes are judged more carefully: streams.clickhouse.errors)
TRANSIENT_QUERY_CODES: frozenset[int] = frozenset({
    32,  # ATTEMPT_TO_READ_AFTER_EOF (a read cut short)
    33,  # CANNOT_READ_ALL_DATA
    202,  # TOO_MANY_SIMULTANEOUS_QUERIES
    203,  # NO_FREE_CONNECTION
    209,  # SOCKET_TIMEOUT
    210,  # NETWORK_ERROR
    236,  # ABORTED
    241,  # MEMORY_LIMIT_EXCEEDED
    242,  # TABLE_IS_READ_ONLY (a replica that lost its keeper)
    252,  # TOO_MANY_PARTS
    279,  # ALL_CONNECTION_TRIES_FAILED
    225,  # NO_ZOOKEEPER
    394,  # QUERY_WAS_CANCELLED
    439,  # CANNOT_SCHEDULE_TASK
    999,  # KEEPER_EXCEPTION
    1000,  # POCO_EXCEPTION
})


def _query_refused(exc: BaseException) -> bool:
    """A user's query that ClickHouse ran and failed for a reason of the query itself
    (``throwIf``, an argument out of bounds, an AST too deep, ...)."""
    from clickhouse_connect.driver.exceptions import DatabaseError

    from streams.clickhouse.errors import error_code

    if not isinstance(exc, DatabaseError):
        return False
    code = error_code(exc)
    return code is not None and code not in TRANSIENT_QUERY_CODES


def query_worker(url: str, sql: str, timeout: float = 130) -> QueryResult | None:
    """Ask a running worker's ``/api/query``; None when nothing answers at ``url``."""
    body = json.dumps({"sql": sql}).encode()
    request = urllib.request.Request(  # noqa: S310 - a loopback URL we build
        url, data=body, headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:  # noqa: S310
            data = json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        try:
            data = json.loads(exc.read())
        except ValueError:
            data = {}
        message = str(data.get("error") or f"HTTP {exc.code} from {url}")
        if exc.code == 404:
            return None  # not a c2m worker (or one without /api/query)
        if exc.code == 400:
            raise StatementError(message) from None
        if exc.code == 422:
            raise SinkRejected(message) from None
        raise SinkUnavailable(f"the running worker could not run the query: {message}") \
            from None
    except (OSError, ValueError):
        return None
    return QueryResult(list(data["columns"]), list(data["rows"]), bool(data.get("truncated")),
                       data.get("clickhouse"))


def format_tsv(result: QueryResult) -> Sequence[str]:
    lines = ["\t".join(result.columns)]
    lines += ["\t".join(str(v) for v in row) for row in result.rows]
    return lines


def readonly_session(settings: Any) -> tuple[Any, dict[str, Any] | None]:
    """For a worker's ``/api/query``: a client of its own on the worker's ClickHouse and
    the per-call settings to use with it. chDB: a new session on the same engine (one
    process may hold several), made read-only for good. HTTP: per-call settings."""
    from streams.clickhouse.client import connect

    client = connect(settings)
    if not str(settings.effective_clickhouse_url).startswith("chdb://"):
        return client, READONLY_SETTINGS
    try:
        client.command(f"SET max_execution_time = {WORKER_QUERY_SECONDS}")
        client.command("SET readonly = 1")
    except Exception as exc:
        from streams.clickhouse.errors import sink_error

        raise sink_error(exc, "read-only session", None) from exc
    return client, None


def worker_url(settings: Any) -> str:
    """Where a running demo or worker on this data directory answers ``/api/query``."""
    from streams.runner import running_web_port

    host = settings.web_host
    if host in ("0.0.0.0", "::", ""):  # noqa: S104 - a wildcard bind is reached on loopback
        host = "127.0.0.1"
    return f"http://{host}:{running_web_port(settings)}/api/query"


def run_query(settings: Any, sql: str) -> QueryResult:
    """Run one read-only statement: on the configured ClickHouse, or, when a running demo
    or worker holds the embedded one, through that process's web server."""
    from streams.clickhouse.client import ChdbInUse, connect
    from streams.settings import mask_url

    statement = one_statement(sql)
    try:
        client = connect(settings, create=False)  # a read creates no .c2m/
    except KeyboardInterrupt:
        # Ctrl-C while the embedded engine starts: it may be half up, and the
        # interpreter's finalisation would tear it down under its threads (a hang)
        raise QueryInterrupted from None
    except ChdbInUse as exc:
        url = worker_url(settings)
        got = query_worker(url, statement)
        if got is None:
            raise SinkUnavailable(
                f"{exc}; no c2m worker answered at {url} (set C2M_WEB_PORT to its port)"
            ) from None
        if got.clickhouse and got.clickhouse != mask_url(settings.effective_clickhouse_url):
            raise SinkUnavailable(
                f"{exc}; the worker at {url} uses another ClickHouse ({got.clickhouse}): "
                "set C2M_WEB_PORT to the port of the one on this data directory"
            ) from None
        return got
    return _interruptible(run_readonly, client, statement)


def _interruptible(fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)`` in a thread of its own while this one waits in short joins, so that
    Ctrl-C reaches the command while ClickHouse computes (chDB releases the GIL; the
    main thread blocked inside it would see the signal only when the query ends). The
    thread is a daemon: an interrupted query ends with the process."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = fn(*args)
        except BaseException as exc:  # handed to the caller's thread
            box["error"] = exc

    thread = threading.Thread(target=target, name="c2m-query", daemon=True)
    try:
        thread.start()
        while thread.is_alive():
            thread.join(0.2)
    except KeyboardInterrupt:
        raise QueryInterrupted from None
    if "error" in box:
        raise box["error"]
    value: T = box["value"]
    return value
