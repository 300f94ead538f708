"""The `c2m` command as a user runs it: demo, db migrate, query, config."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from streams.kafka.embedded import EmbeddedBroker
from tests.helpers.processes import cli_env, query_chdb

pytestmark = pytest.mark.integration


def _c2m(*args: str, cwd: Path, env: dict[str, str], timeout: float = 180) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "streams.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-4000:]
    return out.stdout


@pytest.mark.slow
def test_demo_with_nothing_configured_leaves_rows(tmp_path: Path) -> None:
    """A newcomer's first demo (issue 19): while it runs, `c2m query` works through the
    demo's worker (which holds the embedded chDB) and a DROP is refused in one line; the
    closing summary counts each unit once (the 5-minute windows), prints the web view URL
    and a query that works as printed; no terminal codes in a file, no warning banner."""
    import json
    import shlex
    import time
    import urllib.request

    env = cli_env(tmp_path)
    with open(tmp_path / "demo.out", "w") as out, open(tmp_path / "demo.err", "w") as err:
        demo = subprocess.Popen(
            [sys.executable, "-m", "streams.cli", "demo", "--duration", "30", "--rate", "500"],
            cwd=tmp_path, env=env, stdout=out, stderr=err,
        )
    try:
        deadline = time.monotonic() + 60
        consumed = 0
        while consumed < 500 and time.monotonic() < deadline and demo.poll() is None:
            try:
                with urllib.request.urlopen(
                    f"http://127.0.0.1:{env['C2M_WEB_PORT']}/api/stats", timeout=2
                ) as resp:
                    consumed = json.loads(resp.read())["consumed"]
            except OSError:
                pass
            time.sleep(0.5)
        assert consumed >= 500 and demo.poll() is None
        # the embedded chDB is the demo's: the query runs in the demo, read-only
        got = _c2m("query", "SELECT count() AS n FROM c2m.demand_by_attribute",
                   cwd=tmp_path, env=env).splitlines()
        assert got[0] == "n" and int(got[1]) > 0
        drop = subprocess.run(
            [sys.executable, "-m", "streams.cli", "query", "DROP TABLE c2m.demand_state"],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60, check=False)
        assert drop.returncode == 5, drop.stderr
        assert drop.stderr.count("\n") == 1 and "READONLY" in drop.stderr
        # a second demo in the same folder is refused in one line, and the first goes on
        second = subprocess.run(
            [sys.executable, "-m", "streams.cli", "demo", "--duration", "5"],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60, check=False)
        assert second.returncode == 4, second.stderr
        assert second.stderr.startswith("c2m: error: a c2m demo or worker already runs in "
                                        "this folder (it holds the embedded ClickHouse at ")
        assert second.stderr.count("\n") == 1 and "stop it" in second.stderr
        assert (tmp_path / ".c2m" / "embedded.json").exists()
        assert demo.wait(timeout=120) == 0
    finally:
        if demo.poll() is None:
            demo.kill()
    stdout = (tmp_path / "demo.out").read_text()
    stderr = (tmp_path / "demo.err").read_text()
    assert "c2m-pulse demo stopped" in stdout
    assert "3 dead-lettered" in stdout  # the demo's three poison messages
    assert "\x1b" not in stdout and "\b" not in stdout  # no terminal codes in a file
    assert "WARNING" not in stderr and "ERROR" not in stderr, stderr[-2000:]
    assert f"http://127.0.0.1:{env['C2M_WEB_PORT']}/view" in stdout
    rows = query_chdb(
        tmp_path / ".c2m" / "chdb",
        "SELECT count(), sum(units), uniqExact(window_seconds) FROM c2m.demand_by_attribute",
    )
    count, units, sizes = rows[0]
    assert count > 0 and int(units) > 0 and sizes == 3
    # each unit once: the summary's units are those of the 5-minute windows
    (five_min,) = query_chdb(tmp_path / ".c2m" / "chdb", "SELECT sum(units) FROM "
                             "c2m.demand_by_attribute WHERE window_seconds = 300")[0]
    assert f": {int(five_min):,} units ordered" in stdout
    assert 3 * int(five_min) == int(units)
    # the query the demo suggests works as printed (the c2m it names, in a shell)
    tried = stdout.split("Try:\n")[1].splitlines()[0].strip()
    assert shlex.split(tried)[1] == "query" and "c2m" in shlex.split(tried)[0]
    ran = subprocess.run(["bash", "-c", tried], cwd=tmp_path, env=env, capture_output=True,
                         text=True, timeout=60, check=False)
    assert ran.returncode == 0, ran.stderr
    lines = ran.stdout.splitlines()
    assert lines[0].split("\t") == ["hour_start", "category", "color", "size", "price_band",
                                     "units"]
    assert len(lines) > 1


def test_db_migrate_is_idempotent(tmp_path: Path) -> None:
    env = cli_env(tmp_path)
    from streams.clickhouse.migrations import load

    versions = [m.version for m in load()]
    first = _c2m("db", "migrate", cwd=tmp_path, env=env)
    assert f"applied migrations: {versions}" in first
    assert ("retention changed on: demand_state, demand_cells, market_cells, visitor_cells, "
            "shop_cells, sku_state, sku_hours, sku_days, lost_sales, late_events") in first
    again = _c2m("db", "migrate", cwd=tmp_path, env=env)
    assert "applied migrations: none (up to date)" in again
    assert "retention changed on: none (up to date)" in again
    env["C2M_RETENTION_SKU_DAYS"] = "0"  # keep SKU hours for ever: only sku_state changes
    assert "retention changed on: sku_state, sku_hours, sku_days, lost_sales\n" in _c2m(
        "db", "migrate", cwd=tmp_path, env=env)
    assert '"app_id": "c2m-pulse"' in _c2m("config", cwd=tmp_path, env=env)


def test_query_prints_times_in_their_columns_zone_as_toString_does(tmp_path: Path) -> None:
    """`c2m query` printed every DateTime in UTC (chDB names a top-level DateTime('zone')
    column plain DateTime), though the README says market time: the daily window of
    2026-12-07 (local midnight, Asia/Shanghai) printed as `2026-12-06 16:00:00`, and that
    text pasted back into a WHERE clause found no row. Now a value prints as ClickHouse's
    toString writes it, in its column's zone, inside arrays too; other values unchanged."""
    env = cli_env(tmp_path)
    _c2m("db", "migrate", cwd=tmp_path, env=env)  # C2M_TIMEZONE: Asia/Shanghai by default
    query_chdb(
        tmp_path / ".c2m" / "chdb",
        "INSERT INTO c2m.demand_cells (window_seconds, window_start, window_end, category, "
        "color, size, price_band, region, units, version) VALUES "
        "(86400, '2026-12-07 00:00:00', '2026-12-08 00:00:00', '袜子', '黑', 'M', '0-50', "
        "'CN-31', 7, 1), "
        "(3600, '2026-12-07 02:00:00', '2026-12-07 03:00:00', '袜子', '黑', 'M', '0-50', "
        "'CN-31', 3, 1)",
    )
    out = _c2m(
        "query",
        "SELECT window_seconds, window_start, toString(window_start) AS text, "
        "toTimeZone(window_start, 'UTC') AS utc, "
        "toDateTime64(window_start, 3, 'Asia/Shanghai') + toIntervalMillisecond(250) AS ms, "
        "[window_end] AS ends, toNullable(window_end) AS maybe_end, category, "
        "units / 4 AS quarter, (units, 'x') AS pair "
        "FROM c2m.demand_cells FINAL ORDER BY window_seconds",
        cwd=tmp_path, env=env,
    )
    header, *rows = [line.split("\t") for line in out.splitlines()]
    assert header == ["window_seconds", "window_start", "text", "utc", "ms", "ends",
                      "maybe_end", "category", "quarter", "pair"]
    assert rows == [
        ["3600", "2026-12-07 02:00:00", "2026-12-07 02:00:00", "2026-12-06 18:00:00",
         "2026-12-07 02:00:00.250", "['2026-12-07 03:00:00']", "2026-12-07 03:00:00", "袜子",
         "0.75", "[3, 'x']"],
        ["86400", "2026-12-07 00:00:00", "2026-12-07 00:00:00", "2026-12-06 16:00:00",
         "2026-12-07 00:00:00.250", "['2026-12-08 00:00:00']", "2026-12-08 00:00:00", "袜子",
         "1.75", "[7, 'x']"],
    ]
    # what is printed can be pasted back: it finds its row (in a view of the README too)
    for seconds, start, *_ in rows:
        found = _c2m("query", "SELECT count() AS n FROM c2m.demand_by_attribute WHERE "
                     f"window_seconds = {seconds} AND window_start = '{start}'",
                     cwd=tmp_path, env=env)
        assert found.splitlines() == ["n", "1"], (seconds, start)


def test_the_readme_queries_run_as_printed(tmp_path: Path) -> None:
    """Every `c2m query` in README's code blocks runs on a migrated database, among them
    one of the production brief: `c2m.production_brief` is a parameterized view, so the
    README calls it with its parameters (a plain `SELECT * FROM c2m.production_brief`
    fails with EMPTY_LIST_OF_COLUMNS_QUERIED, which is what a newcomer tried)."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```bash\n(.*?)```", readme, re.S)
    queries = [q for b in blocks for q in re.findall(r'c2m query "(.*?)"', b, re.S)]
    assert any("FROM c2m.production_brief(" in q for q in queries), queries
    assert any("FROM c2m.demand_by_attribute" in q for q in queries), queries
    env = cli_env(tmp_path)
    _c2m("db", "migrate", cwd=tmp_path, env=env)
    for q in queries:  # no demand yet: no rows, but no error either (exit code 0)
        _c2m("query", q, cwd=tmp_path, env=env)
    plain = subprocess.run(
        [sys.executable, "-m", "streams.cli", "query", "SELECT * FROM c2m.production_brief"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180, check=False)
    assert plain.returncode == 5 and "EMPTY_LIST_OF_COLUMNS_QUERIED" in plain.stderr, plain


def test_simulate_writes_valid_events_with_a_real_producer(
    broker: EmbeddedBroker, tmp_path: Path
) -> None:
    from collections import Counter

    from schemas.contract import decode
    from tests.helpers.processes import consume_all

    env = cli_env(tmp_path)
    env["C2M_KAFKA_BOOTSTRAP"] = broker.bootstrap
    from streams.sim.model import seasonality

    out = _c2m("simulate", "--rate", "400", "--duration", "4", "--seed", "3", cwd=tmp_path, env=env)
    produced = int(out.split()[1])
    # about 400 events a second times the market's traffic at this hour (China time: 0.15
    # of the daily mean at 04:00, 2.1 at 21:00), after the 120 catalog records; --rate is
    # also a cap, so busier hours than the mean still send at most 400 a second
    expected = 400 * 4 * min(1.0, seasonality(int(time.time() * 1000) - 4000),
                             seasonality(int(time.time() * 1000)))
    assert produced - 120 > 0.5 * expected, (produced, expected)
    topics: Counter[str] = Counter()
    for topic in ("shop.products", "shop.orders", "shop.pageviews", "shop.logistics"):
        records = consume_all(broker.bootstrap, topic, 10**9, timeout=3)
        for r in records:
            decode(topic, r.value)  # raises if the simulator broke the contract
        topics[topic] = len(records)
    assert topics["shop.products"] == 120
    assert sum(topics.values()) == produced
    assert all(topics.values())


@pytest.mark.slow
def test_alerts_tail_and_brief_against_a_running_demo(tmp_path: Path) -> None:
    """`c2m demo --history-days` (embedded broker and chDB), and while it runs, in other
    processes with nothing but the same data directory: `c2m alerts tail` finds the demo's
    broker, `c2m brief` asks the demo's worker (the embedded chDB is the worker's)."""
    import json
    import time
    import urllib.request

    env = cli_env(tmp_path)
    env["C2M_ALERT_INTERVAL_SECONDS"] = "1"
    env["C2M_ALERT_IDLE_WALL_SECONDS"] = "10"
    # the demo's simulated market has 5 shops, most colours one: with the default k = 3
    # no surge would ever be published (docs/SECURITY.md); this test is about the commands
    env["C2M_MIN_SHOPS_PER_SIGNAL"] = "1"
    demo = subprocess.Popen(
        [sys.executable, "-m", "streams.cli", "demo", "--history-days", "5", "--duration", "400"],
        cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        url = f"http://127.0.0.1:{env['C2M_WEB_PORT']}/api/alerts?all=1"
        deadline = time.monotonic() + 300
        alerts: list[dict[str, object]] = []
        while time.monotonic() < deadline and demo.poll() is None:
            try:
                with urllib.request.urlopen(url, timeout=5) as resp:
                    alerts = json.loads(resp.read())["alerts"]
            except OSError:
                alerts = []
            if any(a["kind"] == "restock" for a in alerts) and any(
                a["kind"] == "surge" for a in alerts
            ):
                break
            time.sleep(2)
        assert demo.poll() is None, "the demo stopped"
        restock = next(a for a in alerts if a["kind"] == "restock")
        factory = str(restock["factory_id"])

        out = _c2m("alerts", "tail", "--factory", factory, "--idle-exit", "4",
                   cwd=tmp_path, env=env)
        assert f"#{restock['alert_id']} v1" in out
        assert "补货提醒" in out and "Restock" in out
        assert "建议补货" in out and "lead time" in out

        brief = _c2m("brief", "--category", "袜子", "--days", "5", cwd=tmp_path, env=env)
        assert "production brief: 袜子" in brief and "colour mix" in brief
        assert "size curve" in brief and "total quantity" in brief
        # 5 days of history: the forecast (once the alert service has made one) gives its
        # 95% interval; before it, the trailing mean has too few days and the brief says why
        if "预测 method: forecast of demand" in brief:
            assert "95% CI " in brief and "no interval" not in brief
        else:
            assert "no forecast yet" in brief
            assert "no interval: " in brief and "at least 7 needed" in brief
        assert "起订量 MOQ" in brief and "下单计划 order plan" in brief
        rows = json.loads(_c2m("brief", "--category", "袜子", "--json", cwd=tmp_path, env=env))
        colors = [r for r in rows if r["dimension"] == "color"]
        assert colors and abs(sum(r["share"] for r in colors) - 1) < 0.02
        assert all(r["share_low"] <= r["share"] <= r["share_high"] for r in colors)
        # the order plan: per colour x size, rounded up to the largest MOQ of its SKUs
        moqs = {tuple(ln.split("\t")[:2]): int(ln.split("\t")[2]) for ln in _c2m(
            "query", "SELECT color, size, max(moq) FROM c2m.products_current "
            "WHERE category = '袜子' GROUP BY color, size", cwd=tmp_path, env=env
        ).splitlines()[1:]}
        plan = [r for r in rows if r["dimension"] == "color_size"]
        assert plan
        for p in plan:
            assert p["moq"] == moqs[(p["color"], p["size"])]
            assert p["order_qty"] % p["moq"] == 0 and p["order_qty"] >= p["need_qty"] > 0
        total = next(r for r in rows if r["dimension"] == "total")
        assert total["order_qty"] == sum(p["order_qty"] for p in plan)
        assert sum(p["need_qty"] for p in plan) >= total["recommended_qty"]
    finally:
        demo.terminate()
        demo.wait(timeout=120)


@pytest.mark.slow
def test_a_second_demo_in_the_same_folder_counts_all_of_its_events(tmp_path: Path) -> None:
    """Issue 18: the embedded broker starts empty every run; the checkpoints of the first
    run must not make the second skip its events. The second run resets the database,
    says so, and consumes and shows as much as the first."""
    env = cli_env(tmp_path)

    def run() -> tuple[int, int, str]:
        out = _c2m("demo", "--duration", "30", "--rate", "500", cwd=tmp_path, env=env)
        # the closing summary's count, not the first progress line's
        summary = re.search(r"^  consumed (\d+) events:", out, re.M)
        assert summary, out[-2000:]
        consumed = int(summary[1])
        units = query_chdb(tmp_path / ".c2m" / "chdb", "SELECT sum(units) FROM "
                           "c2m.demand_by_attribute WHERE window_seconds = 300")[0][0]
        return consumed, int(units), out

    first, first_units, out1 = run()
    second, second_units, out2 = run()
    assert "reset at the start" not in out1 and "reset at the start" in out2
    assert first > 1000 and 0.6 * first <= second <= 1.6 * first, (first, second)
    assert 0.5 * first_units <= second_units <= 2 * first_units
    # the summary's units are the database's: nothing of the first run is left
    assert f"{second_units:,} units" in out2


def test_broker_and_simulate_stop_cleanly_on_sigterm_and_honour_duration(
    tmp_path: Path,
) -> None:
    """`c2m broker` stopped by SIGTERM takes its broker process with it (it was left
    running); `c2m simulate --forever` stopped by SIGTERM flushes and says what it
    produced; at a low --rate, --duration still ends the run (it waited for the next
    token: 10 s at 0.1 events/s, forever at 0.01)."""
    import signal
    import socket

    env = cli_env(tmp_path)
    proc = subprocess.Popen([sys.executable, "-m", "streams.cli", "broker"], cwd=tmp_path,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        m = re.search(r"on (127\.0\.0\.1):(\d+)", line)
        assert m, line + proc.stderr.read() if proc.stderr else line
        host, port = m.group(1), int(m.group(2))
        env["C2M_KAFKA_BOOTSTRAP"] = f"{host}:{port}"

        started = time.monotonic()
        out = _c2m("simulate", "--rate", "0.01", "--duration", "2", cwd=tmp_path, env=env,
                   timeout=60)
        assert time.monotonic() - started < 30 and out.startswith("produced ")

        sim = subprocess.Popen(
            [sys.executable, "-m", "streams.cli", "simulate", "--forever", "--rate", "200"],
            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(6)
        sim.send_signal(signal.SIGTERM)
        stdout, stderr = sim.communicate(timeout=30)
        assert sim.returncode == 0, stderr[-2000:]
        assert re.fullmatch(r"produced \d+ events\n", stdout) and int(stdout.split()[1]) > 0

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        with pytest.raises(OSError), socket.create_connection((host, port), timeout=2):
            pass  # nothing listens there any more: the broker process went with it
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_an_interrupted_broker_start_leaves_no_broker_process(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Ctrl-C or SIGTERM (`c2m broker` raises KeyboardInterrupt for it) while the broker
    process starts: it is stopped, not left running in its own session."""
    import streams.kafka.embedded as embedded

    started: list[Any] = []

    def interrupted(attempt: Any, timeout_s: float, interval_s: float) -> Any:
        started.append(broker._proc)
        raise KeyboardInterrupt

    monkeypatch.setattr(embedded, "poll_until", interrupted)
    broker = EmbeddedBroker()
    with pytest.raises(KeyboardInterrupt):
        broker.start()
    (proc,) = started
    assert proc is not None and proc.poll() is not None  # the child was stopped
