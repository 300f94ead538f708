"""Which ClickHouse failures are outages (retry with backoff) and which are not (fail fast).

An outage goes away by itself: the server is down or restarting, the network drops, a
query times out, the server is overloaded (too many parts, memory, too many queries).
The pipeline pauses and retries those (``SinkUnavailable``).

Everything that comes back the same on every try fails fast (``SinkRejected``): the schema
does not match (an unknown table or column, a type mismatch), the user may not write (a
read-only user, access denied), the query is wrong. Retrying those for ever would look
like an outage in every dashboard while the cause is a deployment mistake; instead the
process stops with one line that names the table and ClickHouse's error.

The decision uses clickhouse-connect's exception classes and ClickHouse's error codes
(``src/Common/ErrorCodes.cpp``): ``ProgrammingError`` raised by the client itself (for
example a column the table does not have) and the codes in ``REFUSED`` are permanent; a
``DatabaseError`` with any other code, and every transport error, is an outage.
"""

from __future__ import annotations

import re
from typing import Final

from clickhouse_connect.driver.exceptions import DatabaseError, Error, ProgrammingError

from streams.errors import SinkError, SinkRejected, SinkUnavailable

#: ClickHouse error codes that no retry can fix: the schema, the query or the permissions.
REFUSED: Final[dict[int, str]] = {
    6: "CANNOT_PARSE_TEXT",
    8: "THERE_IS_NO_COLUMN",
    10: "NOT_FOUND_COLUMN_IN_BLOCK",
    16: "NO_SUCH_COLUMN_IN_TABLE",
    20: "NUMBER_OF_COLUMNS_DOESNT_MATCH",
    27: "CANNOT_PARSE_INPUT_ASSERTION_FAILED",
    36: "BAD_ARGUMENTS",
    41: "CANNOT_PARSE_DATETIME",
    42: "NUMBER_OF_ARGUMENTS_DOESNT_MATCH",
    43: "ILLEGAL_TYPE_OF_ARGUMENT",
    44: "ILLEGAL_COLUMN",
    46: "UNKNOWN_FUNCTION",
    47: "UNKNOWN_IDENTIFIER",
    48: "NOT_IMPLEMENTED",
    53: "TYPE_MISMATCH",
    60: "UNKNOWN_TABLE",
    62: "SYNTAX_ERROR",
    70: "CANNOT_CONVERT_TYPE",
    81: "UNKNOWN_DATABASE",
    117: "INCORRECT_DATA",
    164: "READONLY",
    184: "ILLEGAL_AGGREGATION",
    192: "UNKNOWN_USER",
    215: "NOT_AN_AGGREGATE",
    386: "NO_COMMON_TYPE",
    497: "ACCESS_DENIED",
    516: "AUTHENTICATION_FAILED",
}

_CODE = re.compile(r"\bCode:\s*(\d+)")
_NAME = re.compile(r"\(([A-Z][A-Z0-9_]{2,})\)")


def error_code(exc: BaseException) -> int | None:
    """ClickHouse's numeric error code of ``exc``, when the server (or chDB) gave one."""
    code = getattr(exc, "code", None)
    if isinstance(code, int):
        return code
    m = _CODE.search(str(exc))
    return int(m.group(1)) if m else None


def is_refused(exc: BaseException) -> bool:
    """True when retrying ``exc`` cannot help (see the module docstring)."""
    if not isinstance(exc, Error):
        return False
    code = error_code(exc)
    if code is not None:
        return code in REFUSED
    # raised by the client before anything reached the server: the call itself is wrong
    return isinstance(exc, ProgrammingError)


def _reason(exc: BaseException) -> str:
    code = error_code(exc)
    name = REFUSED.get(code) if code is not None else None
    if name is None:
        m = _NAME.search(str(exc))
        name = m.group(1) if m else type(exc).__name__
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    # the server's text, without the stack trace, the query or any value list
    first = re.sub(r"^Code:\s*\d+\.\s*(DB::Exception:\s*)?", "", first)
    first = first.split(". (")[0]
    first = re.sub(r"'[^']*'", "'…'", first)[:200]  # no value from a query or a row
    return f"{name}{f' ({code})' if code is not None else ''}: {first}".rstrip(": ")


def sink_error(
    exc: BaseException, action: str, table: str | None = None, *,
    topic: str | None = None, partition: int | None = None,
) -> SinkError:
    """The SinkError for a failed ClickHouse call: ``action`` is what was being done
    ("write", "read", ...), ``table`` the table it touched."""
    where = f" {table}" if table else ""
    if is_refused(exc):
        return SinkRejected(
            f"ClickHouse refused the {action} of{where}: {_reason(exc)}",
            topic=topic, partition=partition,
        )
    kind = type(exc).__name__ if not isinstance(exc, DatabaseError) else _reason(exc)
    return SinkUnavailable(
        f"ClickHouse {action}{' of' + where if where else ''} failed: {kind}",
        topic=topic, partition=partition,
    )
