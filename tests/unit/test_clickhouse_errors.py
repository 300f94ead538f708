"""ClickHouse errors: outages are retried, refusals fail fast with one line naming the
table (issue 18). Real exception classes of clickhouse-connect, with ClickHouse's codes."""

from __future__ import annotations

import pytest
from clickhouse_connect.driver.exceptions import (
    DatabaseError,
    OperationalError,
    ProgrammingError,
)

from streams.clickhouse.errors import error_code, is_refused, sink_error
from streams.errors import EXIT_REFUSED, EXIT_UNREACHABLE, SinkRejected, SinkUnavailable


def _server(code: int, name: str, text: str = "something") -> DatabaseError:
    return DatabaseError(f"Code: {code}. DB::Exception: {text}. ({name}) (version 26.9.1.1)")


@pytest.mark.parametrize(("exc", "refused"), [
    (_server(60, "UNKNOWN_TABLE", "Table c2m.demand_state does not exist"), True),
    (_server(16, "NO_SUCH_COLUMN_IN_TABLE"), True),
    (_server(53, "TYPE_MISMATCH"), True),
    (_server(164, "READONLY", "Cannot execute query in readonly mode"), True),
    (_server(62, "SYNTAX_ERROR"), True),
    (_server(497, "ACCESS_DENIED"), True),
    (ProgrammingError("Unrecognized column 'windows' in table c2m.visitor_feed"), True),
    (_server(252, "TOO_MANY_PARTS"), False),
    (_server(159, "TIMEOUT_EXCEEDED"), False),
    (_server(241, "MEMORY_LIMIT_EXCEEDED"), False),
    (_server(202, "TOO_MANY_SIMULTANEOUS_QUERIES"), False),
    (OperationalError("Error HTTPConnectionPool: connection refused"), False),
    (ConnectionResetError("peer"), False),
    (DatabaseError("chDB: cannot lock file status"), False),
])
def test_refusals_and_outages(exc: BaseException, refused: bool) -> None:
    assert is_refused(exc) is refused
    err = sink_error(exc, "write", "c2m.demand_state")
    if refused:
        assert isinstance(err, SinkRejected) and err.exit_code == EXIT_REFUSED
    else:
        assert isinstance(err, SinkUnavailable) and err.exit_code == EXIT_UNREACHABLE
    assert "c2m.demand_state" in str(err)
    assert "\n" not in str(err)


def test_the_message_names_the_table_and_the_error_and_carries_no_value() -> None:
    exc = _server(53, "TYPE_MISMATCH", "Cannot convert 'secret-value' to UInt64")
    msg = str(sink_error(exc, "write", "c2m.sku_state"))
    assert msg.startswith("ClickHouse refused the write of c2m.sku_state: TYPE_MISMATCH (53)")
    assert "secret-value" not in msg and "version" not in msg
    assert error_code(DatabaseError("x", code=81)) == 81


def test_the_store_refuses_a_partition_or_offset_its_columns_cannot_hold() -> None:
    """``source_partition`` is a UInt16: ClickHouse reads a parameter of 65536 as 0, so a
    reset of partition 65536 deleted partition 0. The store refuses it before any query."""
    from streams.clickhouse.store import DemandStore
    from streams.core.config import MAX_OFFSET, MAX_PARTITION

    class NoQueries:
        def __getattr__(self, name: str) -> object:
            raise AssertionError(f"queried ClickHouse: {name}")

    store = DemandStore(NoQueries(), "c2m")
    for call in (lambda: store.reset_partition("shop.orders", MAX_PARTITION + 1),
                 lambda: store.reset_partition("shop.orders", -1),
                 lambda: store.skip_to("shop.orders", MAX_PARTITION + 1, 5),
                 lambda: store.skip_to("shop.orders", 0, MAX_OFFSET + 1)):
        with pytest.raises(ValueError, match="out of range"):
            call()
