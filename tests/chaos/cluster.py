"""Chaos helpers: the `c2m writer` process, workers on the Kafka sink, and the ledger checks.

The ledger is checked twice: per process from the real Prometheus exposition
(``c2m_events_total{topic,outcome}``: consumed = processed + dead_lettered + duplicate + late,
per topic) and durably from the checkpoints in ClickHouse (``c2m.source_progress``), where
``consumed`` must also equal the number of records produced to each topic.
"""

from __future__ import annotations

import time
import urllib.request
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from tests.helpers.processes import Worker

OUTCOMES = ("processed", "dead_lettered", "duplicate", "late")


class Writer(Worker):
    """A `c2m writer` child process: owns the chDB under ``data_dir``, serves restores."""

    command = "writer"

    def __init__(self, bootstrap: str, data_dir: Path, **env: str) -> None:
        super().__init__(bootstrap, data_dir, **env)
        self.env["C2M_WRITER_PORT"] = str(self.web_port)
        self.log_path = data_dir.parent / f"writer-{self.web_port}.log"

    def sink_env(self) -> dict[str, str]:
        """Environment for workers that flush through this writer."""
        return {"C2M_SINK": "kafka", "C2M_WRITER_PORT": str(self.web_port)}


def wait_until(what: str, cond: Callable[[], Any], timeout: float, *procs: Worker) -> Any:
    """Poll ``cond`` until truthy; fail early if one of ``procs`` died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for p in procs:
            assert p.proc is not None and p.proc.poll() is None, (
                f"{p.command} died\n{p.log_tail()}"
            )
        if result := cond():
            return result
        time.sleep(0.3)
    stats = [p.stats() for p in procs]
    tails = "\n".join(p.log_tail(2000) for p in procs)
    raise AssertionError(f"timed out waiting for {what}: {stats}\n{tails}")


def consumed(proc: Worker) -> int:
    return int((proc.stats() or {}).get("consumed", -1))


def rows_beyond_checkpoint(proc: Worker) -> int:
    """demand_state rows newer than their partition's last checkpoint: a flush that wrote
    its rows and died before its checkpoint (query after the process is gone)."""
    return int(proc.query(
        "SELECT count() FROM c2m.demand_state AS d LEFT JOIN (SELECT source_topic, "
        "source_partition, max(position) AS cp FROM c2m.checkpoints GROUP BY ALL) AS c "
        "USING (source_topic, source_partition) WHERE d.version > c.cp"
    )[0][0])


def metrics_text(worker: Worker) -> str:
    port = worker.env["C2M_METRICS_PORT"]
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        return str(resp.read().decode())


def metric_value(text: str, name: str) -> float:
    """Sum of all samples of ``name`` (e.g. ``c2m_rebalances_total``)."""
    return sum(
        s.value for fam in text_string_to_metric_families(text) for s in fam.samples
        if s.name == name
    )


def metrics_ledger(worker: Worker) -> dict[str, Counter[str]]:
    """Per topic and outcome, this process's ``c2m_events_total``."""
    out: dict[str, Counter[str]] = {}
    for fam in text_string_to_metric_families(metrics_text(worker)):
        for s in fam.samples:
            if s.name == "c2m_events_total":
                out.setdefault(s.labels["topic"], Counter())[s.labels["outcome"]] += s.value
    return out


def assert_metrics_ledger_balanced(worker: Worker) -> dict[str, Counter[str]]:
    ledger = metrics_ledger(worker)
    assert ledger, "no c2m_events_total samples"
    for topic, c in ledger.items():
        assert c["consumed"] == sum(c[o] for o in OUTCOMES), (topic, dict(c))
    return ledger


def assert_stored_ledger(
    query: Callable[..., list[tuple[Any, ...]]], produced: Counter[str]
) -> None:
    """Checkpoint ledgers in ClickHouse: balanced per topic, and consumed == produced."""
    rows = query(
        "SELECT source_topic, sum(consumed), sum(processed), sum(dead_lettered), "
        "sum(duplicates), sum(late) FROM c2m.source_progress GROUP BY source_topic"
    )
    got = {r[0]: [int(v) for v in r[1:]] for r in rows}
    assert set(got) == set(produced), (got, produced)
    for topic, (consumed, *outcomes) in got.items():
        assert consumed == produced[topic] == sum(outcomes), (topic, consumed, outcomes)
