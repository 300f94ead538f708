"""Fixtures of the suites that run real processes (a Tansu broker, `c2m worker` children,
chDB), given to every test directory through ``pytest_plugins`` in ``tests/conftest.py``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from streams.kafka.embedded import EmbeddedBroker
from streams.kafka.topics import ensure_topics
from tests.helpers.processes import Worker


@pytest.fixture(scope="session")
def engine_client(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A client on the one chDB engine this test process may open (each test uses its own
    database on it)."""
    from streams.clickhouse.client import connect
    from streams.settings import Settings

    return connect(Settings(data_dir=tmp_path_factory.mktemp("chdb-engine")))


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[EmbeddedBroker]:
    with EmbeddedBroker(log_path=tmp_path / "broker.log") as b:
        ensure_topics(b.bootstrap, 4)
        yield b


@pytest.fixture
def worker_factory(broker: EmbeddedBroker, tmp_path: Path) -> Iterator[Any]:
    workers: list[Worker] = []

    def make(data_dir: Path | None = None, **env: str) -> Worker:
        w = Worker(broker.bootstrap, data_dir or tmp_path / f"data{len(workers)}", **env)
        workers.append(w)
        return w

    yield make
    for w in workers:
        if w.proc is not None and w.proc.poll() is None:
            w.proc.kill()
            w.proc.wait()
