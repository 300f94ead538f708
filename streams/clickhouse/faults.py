"""A fault-injecting ClickHouse client wrapper, for chaos tests and drills.

Enabled only by ``C2M_CLICKHOUSE_FAULT_FILE``. While that file exists:

- by default (any content but ``stall``) every call fails as if ClickHouse were
  unreachable. chDB runs in-process and cannot be "stopped", so this is how tests take the
  embedded ClickHouse away for a while (an HTTP server would be cut off with a TCP proxy);
- with the content ``stall``, the insert into ``checkpoints`` (the last write of a flush)
  blocks after touching ``<file>.stalled``, until the file is removed: the flush's rows are
  in ClickHouse, its checkpoint is not. A test SIGKILLs the process in exactly that state.
  ``stall N`` lets the first N such inserts through and stalls the next one, so a test can
  arm the fault before the process starts and still stall a flush that is not its first;
- with ``overload``, writes fail as an overloaded server answers (TOO_MANY_PARTS: reads
  still work): an outage, retried;
- with ``refuse``, writes fail as a server whose schema does not match answers
  (NO_SUCH_COLUMN_IN_TABLE): not an outage, the process stops (``SinkRejected``).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from clickhouse_connect.driver.exceptions import DatabaseError, OperationalError

from streams.faultfile import StallPoint, stall_skips


class FaultInjectingClient:
    def __init__(self, client: Any, fault_file: Path) -> None:
        self._client = client
        self._fault_file = fault_file
        self.failures = 0
        self._stall = StallPoint()

    def _mode(self) -> str | None:
        try:
            return self._fault_file.read_text().strip() or "fail"
        except FileNotFoundError:
            return None
        except OSError:
            return "fail"

    def _check(self, write: bool = False) -> None:
        mode = self._mode()
        if mode is None or stall_skips(mode) is not None:
            return
        if mode == "refuse":
            if not write:
                return
            self.failures += 1
            raise DatabaseError(
                "Code: 16. DB::Exception: There is no column 'injected' in table. "
                "(NO_SUCH_COLUMN_IN_TABLE)", code=16)
        if mode == "overload":
            if not write:
                return
            self.failures += 1
            raise DatabaseError(
                "Code: 252. DB::Exception: Too many parts (3000). Merges are processing "
                "significantly slower than inserts. (TOO_MANY_PARTS)", code=252)
        self.failures += 1
        raise OperationalError("injected fault: ClickHouse unavailable")

    def insert(self, table: str, *args: Any, **kwargs: Any) -> Any:
        self._check(write=True)
        if table.endswith(".checkpoints") and self._stall.reached(self._mode()):
            Path(f"{self._fault_file}.stalled").touch()
            while self._fault_file.exists():
                time.sleep(0.05)
        return self._client.insert(table, *args, **kwargs)

    def query(self, *args: Any, **kwargs: Any) -> Any:
        self._check()
        return self._client.query(*args, **kwargs)

    def command(self, *args: Any, **kwargs: Any) -> Any:
        self._check(write=True)  # DDL, INSERT ... SELECT (the refresh), DELETE
        return self._client.command(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)
