"""A real Prometheus scrapes a running `c2m demo`; the throughput series is non-zero, and
the ops alert rules (deploy/prometheus/rules.yml) fire on the live metrics: ClickHouse
made to fail under the demo raises `C2MSinkFailing`, its return clears it."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from streams.kafka.embedded import free_port
from tests.helpers.processes import cli_env

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def _prom_query(port: int, expr: str) -> list[dict[str, Any]]:
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=5) as resp:
        body = json.loads(resp.read())
    assert body["status"] == "success", body
    return list(body["data"]["result"])


def _value(result: list[dict[str, Any]]) -> float:
    return sum(float(r["value"][1]) for r in result)


def _firing(port: int, alertname: str) -> bool:
    return bool(_prom_query(port, f'ALERTS{{alertname="{alertname}", alertstate="firing"}}'))


def _wait_alert(port: int, alertname: str, *, firing: bool, demo: Any, timeout: float = 45
                ) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert demo.poll() is None, "the demo exited"
        if _firing(port, alertname) is firing:
            return
        time.sleep(1)
    state = _prom_query(port, f'ALERTS{{alertname="{alertname}"}}')
    raise AssertionError(f"{alertname} firing={not firing} after {timeout}s: {state}")


@pytest.mark.slow
def test_prometheus_scrapes_a_running_demo(tmp_path: Path) -> None:
    prometheus = shutil.which("prometheus")
    assert prometheus, "Debian package prometheus missing (.ci/run installs it)"
    env = cli_env(tmp_path)
    metrics_port = int(env["C2M_METRICS_PORT"])
    prom_port = free_port()

    # The compose stack's scrape config, pointed at the demo and scraping every second.
    config = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    config["global"].update(scrape_interval="1s", scrape_timeout="1s")
    job = next(j for j in config["scrape_configs"] if j["job_name"] == "c2m-worker")
    job.pop("dns_sd_configs")
    job["static_configs"] = [{"targets": [f"127.0.0.1:{metrics_port}"]}]
    # The compose stack's alert rules, evaluated every second, with their `for:` cut to 3 s.
    rules = yaml.safe_load((ROOT / "deploy/prometheus/rules.yml").read_text())
    for group in rules["groups"]:
        group["interval"] = "1s"
        for rule in group["rules"]:
            if "for" in rule:
                rule["for"] = "3s"
    (tmp_path / "rules.yml").write_text(yaml.safe_dump(rules))
    config_path = tmp_path / "prometheus.yml"
    config_path.write_text(yaml.safe_dump(config))
    fault = tmp_path / "clickhouse-down"
    env["C2M_CLICKHOUSE_FAULT_FILE"] = str(fault)

    demo_log = open(tmp_path / "demo.log", "wb")  # noqa: SIM115
    prom_log = open(tmp_path / "prometheus.log", "wb")  # noqa: SIM115
    demo = subprocess.Popen(
        [sys.executable, "-m", "streams.cli", "demo", "--duration", "120", "--rate", "300"],
        cwd=tmp_path, env=env, stdout=demo_log, stderr=subprocess.STDOUT,
    )
    prom = subprocess.Popen(
        [prometheus, f"--config.file={config_path}",
         f"--storage.tsdb.path={tmp_path / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{prom_port}"],
        stdout=prom_log, stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        rate = up = 0.0
        while time.monotonic() < deadline:
            assert demo.poll() is None, (tmp_path / "demo.log").read_text()[-3000:]
            assert prom.poll() is None, (tmp_path / "prometheus.log").read_text()[-3000:]
            try:
                up = _value(_prom_query(prom_port, 'up{job="c2m-worker"}'))
                rate = _value(_prom_query(
                    prom_port, 'sum(rate(c2m_events_total{outcome="consumed"}[5s]))'
                ))
            except OSError:
                pass  # Prometheus still starting
            if up == 1 and rate > 0:
                break
            time.sleep(1)
        assert up == 1, (tmp_path / "prometheus.log").read_text()[-3000:]
        assert rate > 0, "throughput series stayed at zero"
        # other series the dashboards use arrive through the same scrape
        assert _value(_prom_query(prom_port, "sum(c2m_sink_flush_seconds_count)")) > 0
        assert _prom_query(prom_port, "c2m_build_info")
        # every Pipeline health expression evaluates on the live server
        board = json.loads((ROOT / "deploy/grafana/dashboards/pipeline-health.json").read_text())
        exprs = [t["expr"] for p in board["panels"] for t in p["targets"] if "expr" in t]
        results = {e: _prom_query(prom_port, e.replace("$__rate_interval", "5s")) for e in exprs}
        throughput = next(e for e in exprs if 'outcome="consumed"' in e and "by (topic)" in e)
        assert _value(results[throughput]) > 0

        # the alert rules on the live series: healthy now; ClickHouse down -> firing
        assert _firing(prom_port, "C2MSinkFailing") is False
        fault.touch()
        _wait_alert(prom_port, "C2MSinkFailing", firing=True, demo=demo)
        fault.unlink()
        _wait_alert(prom_port, "C2MSinkFailing", firing=False, demo=demo)
    finally:
        for proc in (prom, demo):
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        demo_log.close()
        prom_log.close()
