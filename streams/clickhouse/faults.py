"""A fault-injecting ClickHouse client wrapper, for chaos tests and drills.

Enabled only by ``C2M_CLICKHOUSE_FAULT_FILE``: while that file exists every call fails as
if ClickHouse were unreachable. chDB runs in-process and cannot be "stopped", so this is
how tests take the embedded ClickHouse away for a while (an HTTP server would be cut off
with a TCP proxy instead).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from clickhouse_connect.driver.exceptions import OperationalError


class FaultInjectingClient:
    def __init__(self, client: Any, fault_file: Path) -> None:
        self._client = client
        self._fault_file = fault_file
        self.failures = 0

    def _check(self) -> None:
        if self._fault_file.exists():
            self.failures += 1
            raise OperationalError("injected fault: ClickHouse unavailable")

    def insert(self, *args: Any, **kwargs: Any) -> Any:
        self._check()
        return self._client.insert(*args, **kwargs)

    def query(self, *args: Any, **kwargs: Any) -> Any:
        self._check()
        return self._client.query(*args, **kwargs)

    def command(self, *args: Any, **kwargs: Any) -> Any:
        self._check()
        return self._client.command(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)
