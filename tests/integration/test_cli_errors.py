"""Issue 19: every expected failure of a `c2m` command is one line on stderr and a
documented exit code (streams.errors), run as a user runs it: `python -m streams.cli` in a
fresh folder. The cases that need a running demo are in test_cli.py (one demo for several)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from streams.errors import EXIT_CONFIG, EXIT_REFUSED, EXIT_UNREACHABLE, EXIT_USAGE
from streams.kafka.embedded import free_port

pytestmark = pytest.mark.integration


def c2m_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("C2M_")}
    env.update({"C2M_WEB_PORT": str(free_port()), "C2M_METRICS_PORT": str(free_port()),
                **extra})
    return env


def c2m(*args: str, cwd: Path, env: dict[str, str] | None = None,
        timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streams.cli", *args], cwd=cwd,
        env=env if env is not None else c2m_env(), capture_output=True, text=True,
        timeout=timeout, check=False,
    )


def one_line(out: subprocess.CompletedProcess[str], code: int) -> str:
    """The failure's only stderr line (asserting the exit code and no traceback)."""
    lines = out.stderr.strip().splitlines()
    assert out.returncode == code, (out.returncode, out.stderr[-3000:])
    assert len(lines) == 1, out.stderr[-3000:]
    assert lines[0].startswith("c2m: error: "), lines
    return lines[0]


def test_a_setting_that_is_not_json_names_variable_value_and_format(tmp_path: Path) -> None:
    line = one_line(c2m("config", cwd=tmp_path, env=c2m_env(C2M_WINDOW_SECONDS="abc")),
                    EXIT_CONFIG)
    assert "C2M_WINDOW_SECONDS='abc' is not valid: expected a JSON list" in line
    assert "e.g. [300,3600,86400]" in line
    line = one_line(c2m("config", cwd=tmp_path, env=c2m_env(C2M_WEB_PORT="x")), EXIT_CONFIG)
    assert "C2M_WEB_PORT='x'" in line and "expected an integer >= 0 and <= 65535" in line


@pytest.mark.parametrize(
    ("variable", "value", "why"),
    [
        ("C2M_CORRECTION_HORIZON_HOURS", "1e999", "finite"),
        ("C2M_LIVE_RETENTION_HOURS", "nan", "finite"),
        ("C2M_PRICE_BAND_EDGES", "[0,10,5]", "strictly increasing"),
        ("C2M_PRICE_BAND_EDGES", "[]", "start at 0"),
    ],
)
def test_a_setting_out_of_its_domain_is_a_configuration_error(
    tmp_path: Path, variable: str, value: str, why: str
) -> None:
    """Values a type check lets through (inf, nan, price bands out of order) are refused
    when the settings are read, not by the part that uses them ("unexpected" errors)."""
    for args in (("config",), ("query", "SELECT 1")):
        line = one_line(c2m(*args, cwd=tmp_path, env=c2m_env(**{variable: value})),
                        EXIT_CONFIG)
        assert f"{variable}={value!r}" in line and why in line


def test_a_missing_tls_file_names_the_setting(tmp_path: Path) -> None:
    env = c2m_env(C2M_KAFKA_SECURITY_PROTOCOL="SSL", C2M_KAFKA_SSL_CAFILE="/nope/ca.pem",
                  C2M_KAFKA_BOOTSTRAP=f"127.0.0.1:{free_port()}")
    line = one_line(c2m("simulate", "--duration", "1", cwd=tmp_path, env=env), EXIT_CONFIG)
    assert "C2M_KAFKA_SSL_CAFILE=/nope/ca.pem" in line and "No such file" in line


def test_secrets_are_not_shown_in_a_settings_error(tmp_path: Path) -> None:
    env = c2m_env(C2M_CLICKHOUSE_PASSWORD="canary-7f",  # noqa: S106
                  C2M_KAFKA_SECURITY_PROTOCOL="SASL_SSL")
    out = c2m("query", "SELECT 1", cwd=tmp_path, env=env)
    line = one_line(out, EXIT_CONFIG)
    assert "C2M_KAFKA_SASL_MECHANISM" in line and "canary" not in out.stderr + out.stdout
    # a URL that does not parse still has its password masked
    for url in ("ftp://u:canary-7f@x", "http://u:canary-7f@[::1", "http://u:canary-7f@h:99999",
                "http://u:canary/7f@h:8123", "http://u:canary#7f@h:8123"):
        out = c2m("query", "SELECT 1", cwd=tmp_path, env=c2m_env(C2M_CLICKHOUSE_URL=url))
        line = one_line(out, EXIT_CONFIG)
        assert line.startswith("c2m: error: C2M_CLICKHOUSE_URL='") and "is not valid" in line
        assert "canary" not in out.stderr + out.stdout and "**********" in line


def test_a_kafka_bootstrap_that_is_not_host_port_is_a_configuration_error(
    tmp_path: Path,
) -> None:
    for value in ("abc", "127.0.0.1:99999", "127.0.0.1:9092,:1"):
        line = one_line(c2m("config", cwd=tmp_path, env=c2m_env(C2M_KAFKA_BOOTSTRAP=value)),
                        EXIT_CONFIG)
        assert f"C2M_KAFKA_BOOTSTRAP={value!r} is not valid" in line and "host:port" in line


def test_traceback_only_with_debug(tmp_path: Path) -> None:
    out = c2m("--debug", "config", cwd=tmp_path, env=c2m_env(C2M_WINDOW_SECONDS="abc"))
    assert out.returncode == EXIT_CONFIG and "Traceback" in out.stderr
    assert out.stderr.strip().splitlines()[-1].startswith("c2m: error: C2M_WINDOW_SECONDS")
    out = c2m("query", "SELECT 1; SELECT 2", cwd=tmp_path, env=c2m_env(C2M_LOG_LEVEL="debug"))
    assert out.returncode == EXIT_USAGE and "Traceback" in out.stderr


@pytest.mark.parametrize(
    ("args", "wrong"),
    [
        (("demo", "--duration", "-5"), "--duration"),
        (("demo", "--rate", "0"), "--rate"),
        (("demo", "--speed", "-1"), "--speed"),
        (("demo", "--history-days", "-1"), "--history-days"),
        (("alerts", "tail", "--factory", ""), "--factory"),
        (("brief", "--category", " "), "--category"),
        (("brief", "--category", "袜子", "--factory", ""), "--factory"),
        (("brief", "--category", "x" * 129), "--category"),  # /api/brief refuses it too
        (("demo", "--duratoin", "5"), "--duratoin"),
        (("reset",), "--topic"),  # click listed the choices on four lines
        (("db", "grant", "-f", "F001", "--print-sql", "--users-xml"), "--users-xml"),
        (("db", "grant", "-f", "F001", "--password-env", ""), "--password-env"),
        # nan and inf pass a plain range check
        (("demo", "--rate", "inf"), "--rate"),
        (("demo", "--duration", "nan"), "--duration"),
        (("demo", "--history-days", "nan"), "--history-days"),
        (("worker", "--duration", "inf"), "--duration"),
        (("simulate", "--speed", "nan"), "--speed"),
        # ClickHouse would read partition 65536 as 0 (UInt16): reset deleted partition 0
        (("reset", "--topic", "shop.orders", "--partition", "65536", "--yes"), "--partition"),
        (("reset", "--topic", "shop.orders", "--partition", "-1", "--yes"), "--partition"),
        (("skip", "--topic", "shop.orders", "--partition", "65539", "--to", "9", "--yes"),
         "--partition"),
        (("skip", "--topic", "shop.orders", "--partition", "1", "--to", "9" * 20, "--yes"),
         "--to"),
    ],
)
def test_bad_command_line_values_are_refused(
    tmp_path: Path, args: tuple[str, ...], wrong: str
) -> None:
    line = one_line(c2m(*args, cwd=tmp_path), EXIT_USAGE)
    assert wrong in line and "--help" in line
    assert not (tmp_path / ".c2m").exists()  # refused before anything started


def test_usage_errors_read_as_one_sentence_each(tmp_path: Path) -> None:
    """Not "c2m: error: c2m: No such command", a full stop before click's suggestion, and a
    group without its subcommand in one line (it printed the whole help)."""
    line = one_line(c2m("frobnicate", cwd=tmp_path), EXIT_USAGE)
    assert line == "c2m: error: No such command 'frobnicate'. (see: c2m --help)"
    line = one_line(c2m("demo", "--durration", "5", cwd=tmp_path), EXIT_USAGE)
    assert "No such option: --durration. Did you mean --duration?" in line
    line = one_line(c2m("alerts", cwd=tmp_path), EXIT_USAGE)
    assert line == "c2m: error: c2m alerts: missing its command: tail (see: c2m alerts --help)"
    line = one_line(c2m("db", cwd=tmp_path), EXIT_USAGE)
    assert "c2m db: missing its command: one of grant, migrate" in line
    assert not (tmp_path / ".c2m").exists()
    out = c2m(cwd=tmp_path)  # c2m alone: its help
    assert out.returncode == EXIT_USAGE and out.stderr.startswith("Usage: c2m ")


def test_a_host_this_machine_cannot_listen_on_names_its_setting(tmp_path: Path) -> None:
    """Not "in use": the name does not resolve, or the address is not this machine's."""
    for host in ("no-such-host.invalid", "192.0.2.1"):
        out = c2m("demo", "--duration", "2", cwd=tmp_path, env=c2m_env(C2M_WEB_HOST=host))
        line = one_line(out, EXIT_CONFIG)
        assert f"cannot listen on {host}:" in line and "check C2M_WEB_HOST" in line
        assert "in use" not in line


def test_a_data_directory_that_cannot_be_made_names_its_setting(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("")
    line = one_line(c2m("demo", "--duration", "2", cwd=tmp_path,
                        env=c2m_env(C2M_DATA_DIR="afile")), EXIT_CONFIG)
    assert "C2M_DATA_DIR='afile': cannot create the data directory (File exists)" in line
    line = one_line(c2m("db", "migrate", cwd=tmp_path,
                        env=c2m_env(C2M_DATA_DIR="afile/sub")), EXIT_CONFIG)
    assert "cannot create the embedded ClickHouse directory" in line and "C2M_DATA_DIR" in line


def test_ctrl_c_stops_a_query_on_the_embedded_clickhouse(tmp_path: Path) -> None:
    """chDB computes with the GIL released: the query runs in a thread so that Ctrl-C
    reaches the command at once (it was ignored until the query ended), and the process
    leaves without tearing chDB down under the query (which segfaulted)."""
    import signal

    assert c2m("db", "migrate", cwd=tmp_path).returncode == 0
    proc = subprocess.Popen(
        [sys.executable, "-m", "streams.cli", "query", "SELECT count() FROM system.numbers"],
        cwd=tmp_path, env=c2m_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        # Ctrl-C as a terminal delivers it: a suite started in the background of a shell
        # without job control inherits SIGINT ignored (and so would the command)
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    time.sleep(4)
    assert proc.poll() is None  # still counting
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=15)
    assert proc.returncode == 130, stderr[-2000:]
    assert stderr.strip().splitlines() == ["c2m: error: interrupted"] and stdout == ""


def test_a_brief_before_any_demo_says_what_to_run(tmp_path: Path) -> None:
    (tmp_path / ".c2m" / "chdb").mkdir(parents=True)  # a data directory without the tables
    line = one_line(c2m("brief", "--category", "袜子", cwd=tmp_path), EXIT_REFUSED)
    assert "production_brief" in line and "run `c2m demo`" in line


def test_a_read_where_no_demo_runs_says_so_and_never_reads_another_folders_demo(
    worker_factory: Any, tmp_path: Path
) -> None:
    """A newcomer's case: in a folder without a demo, `c2m brief` printed the brief of the
    demo of another folder answering on the same web port (while `c2m query` said
    UNKNOWN_DATABASE), and left an empty .c2m/ behind."""
    from tests.helpers.processes import chdb_held_by_another

    (tmp_path / "other").mkdir()
    other = worker_factory(tmp_path / "other" / ".c2m").start()
    other.wait_consumed(0)  # its web server answers
    here = tmp_path / "here"
    here.mkdir()
    env = c2m_env(C2M_WEB_PORT=str(other.web_port))
    for args in (("brief", "--category", "袜子"), ("query", "SELECT 1")):
        line = one_line(c2m(*args, cwd=here, env=env), EXIT_UNREACHABLE)
        assert line.startswith("c2m: error: no c2m demo runs in this folder (no embedded "
                               f"ClickHouse at {here / '.c2m' / 'chdb'})"), line
    assert not (here / ".c2m").exists()  # a read creates nothing
    # this folder's ClickHouse is held by a process that does not answer on that port: the
    # worker that does is another folder's, and its brief is not this folder's
    with chdb_held_by_another(here / ".c2m" / "chdb"):
        line = one_line(c2m("brief", "--category", "袜子", cwd=here, env=env),
                        EXIT_UNREACHABLE)
    assert f"the c2m worker at http://127.0.0.1:{other.web_port} is another folder's" in line


def test_a_brief_in_another_time_zone_than_the_database_is_refused(tmp_path: Path) -> None:
    """Its local days would be another zone's (it printed a brief without a word)."""
    assert c2m("db", "migrate", cwd=tmp_path).returncode == 0  # Asia/Shanghai
    line = one_line(c2m("brief", "--category", "袜子", cwd=tmp_path,
                        env=c2m_env(C2M_TIMEZONE="UTC")), EXIT_CONFIG)
    assert "holds days in time zone Asia/Shanghai" in line and "C2M_TIMEZONE" in line


def test_several_statements_are_refused(tmp_path: Path) -> None:
    (tmp_path / ".c2m" / "chdb").mkdir(parents=True)  # c2m query creates no data directory
    for sql in ("SELECT 1 AS a; SELECT 2 AS b", "SELECT 1 AS a; SELECT 2 AS b, 3 AS c"):
        out = c2m("query", sql, cwd=tmp_path)
        line = one_line(out, EXIT_USAGE)
        assert "one statement at a time, got 2" in line and out.stdout == ""
    out = c2m("query", "SELECT 'a;b' AS x;", cwd=tmp_path)
    assert out.returncode == 0 and out.stdout == "x\na;b\n", out.stderr


def test_refused_queries_give_clickhouse_error_name_and_an_empty_brief_exit_1(
    tmp_path: Path,
) -> None:
    assert c2m("db", "migrate", cwd=tmp_path).returncode == 0
    line = one_line(c2m("query", "DROP TABLE c2m.demand_state", cwd=tmp_path), EXIT_REFUSED)
    assert "READONLY" in line and "c2m query only reads" in line
    line = one_line(c2m("query", "SELECT unitz FROM c2m.demand_by_attribute", cwd=tmp_path),
                    EXIT_REFUSED)
    assert "UNKNOWN_IDENTIFIER" in line and "unitz" in line and "DESCRIBE" in line
    line = one_line(c2m("query", "SELECT * FROM c2m.nope", cwd=tmp_path), EXIT_REFUSED)
    assert "UNKNOWN_TABLE" in line
    # a query ClickHouse ran and failed for a reason of its own is refused too (was 4)
    line = one_line(c2m("query", "SELECT throwIf(1)", cwd=tmp_path), EXIT_REFUSED)
    assert "FUNCTION_THROW_IF_VALUE_IS_NON_ZERO" in line
    # the table is still there
    out = c2m("query", "SELECT count() FROM c2m.demand_state", cwd=tmp_path)
    assert out.returncode == 0 and out.stdout.splitlines()[1] == "0"
    # a brief without demand: exit code 1 and why, in one line
    out = c2m("brief", "--category", "袜子", cwd=tmp_path)
    assert out.returncode == 1 and out.stdout == "", out.stderr
    (line,) = out.stderr.strip().splitlines()
    assert line.startswith("c2m: no demand for category '袜子' in the last 14 days")


def test_a_brief_for_a_category_that_never_had_demand_says_so_and_lists_known_ones(
    tmp_path: Path,
) -> None:
    """It suggested a longer demo (--history-days 7) even while a 7-day demo ran."""
    from tests.helpers.processes import query_chdb

    assert c2m("db", "migrate", cwd=tmp_path).returncode == 0
    query_chdb(tmp_path / ".c2m" / "chdb", (
        "INSERT INTO c2m.demand_cells (window_seconds, window_start, window_end, category, "
        "color, size, price_band, region, units, version) VALUES "
        "(86400, '2026-12-01 00:00:00', '2026-12-02 00:00:00', '袜子', '黑', 'M', '10-20', "
        "'华东', 5, 1), "
        "(86400, '2026-12-01 00:00:00', '2026-12-02 00:00:00', 'T恤', '白', 'L', '50-100', "
        "'华东', 9, 1), "
        "(86400, '2026-12-01 00:00:00', '2026-12-02 00:00:00', '拖鞋', '白', 'L', '50-100', "
        "'华东', 0, 1)"))  # page views only: no demand
    out = c2m("brief", "--category", "不存在", cwd=tmp_path)
    assert out.returncode == 1 and out.stdout == "", out.stderr
    (line,) = out.stderr.strip().splitlines()
    assert line == ("c2m: no demand ever for category '不存在': not a category of this "
                    "market? categories with demand: T恤, 袜子"), line
    # a category with demand, none in the period: the period's message
    out = c2m("brief", "--category", "袜子", cwd=tmp_path)
    assert out.returncode == 1 and "no demand for category '袜子' in the last 14 days" in \
        out.stderr and "categories with demand" not in out.stderr


def test_worker_against_a_dead_broker_says_so_in_one_line_quickly(tmp_path: Path) -> None:
    dead = f"127.0.0.1:{free_port()}"
    started = time.monotonic()
    out = c2m("worker", cwd=tmp_path, env=c2m_env(C2M_KAFKA_BOOTSTRAP=dead), timeout=60)
    took = time.monotonic() - started
    line = one_line(out, EXIT_UNREACHABLE)
    assert f"cannot reach Kafka at {dead} (connection refused" in line
    assert "C2M_KAFKA_BOOTSTRAP" in line and took < 20, took
    assert out.stdout == ""


def test_simulate_and_alerts_tail_without_a_broker(tmp_path: Path) -> None:
    line = one_line(c2m("simulate", "--duration", "1", cwd=tmp_path), EXIT_CONFIG)
    assert "C2M_KAFKA_BOOTSTRAP is not set" in line
    line = one_line(c2m("alerts", "tail", cwd=tmp_path), EXIT_UNREACHABLE)
    assert "start `c2m demo`" in line and "C2M_KAFKA_BOOTSTRAP" in line


def test_unreachable_clickhouse_server(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    out = c2m("query", "SELECT 1", cwd=tmp_path, env=c2m_env(C2M_CLICKHOUSE_URL=url))
    line = one_line(out, EXIT_UNREACHABLE)
    assert f"cannot connect to ClickHouse at {url}" in line and "C2M_CLICKHOUSE_URL" in line


def _products(bootstrap: str, factories: list[str]) -> None:
    import orjson

    from tests.helpers.processes import produce

    produce(bootstrap, [
        ("shop.products", f"SKU-{i}".encode(), orjson.dumps({
            "event_id": f"p-{i}", "event_type": "product_upsert", "ts": 1_700_000_000_000,
            "shop_id": "s1", "sku": f"SKU-{i}", "factory_id": f, "category": "袜子",
            "color": "黑", "size": "M", "list_price": 9.9, "lead_time_days": 7, "moq": 500,
        })) for i, f in enumerate(factories)
    ])


def test_alerts_tail_warns_about_a_factory_not_in_the_catalog(
    broker: Any, tmp_path: Path
) -> None:
    _products(broker.bootstrap, ["F001", "F002"])
    env = c2m_env(C2M_KAFKA_BOOTSTRAP=broker.bootstrap)
    out = c2m("alerts", "tail", "--factory", "F999", "--idle-exit", "2", cwd=tmp_path, env=env)
    assert out.returncode == 0, out.stderr
    (line,) = out.stderr.strip().splitlines()
    assert line.startswith("c2m: warning: factory 'F999' is not in the catalog")
    assert "F001, F002" in line
    out = c2m("alerts", "tail", "--factory", "F001", "--idle-exit", "2", cwd=tmp_path, env=env)
    assert out.returncode == 0 and out.stderr == "", out.stderr


def test_alerts_tail_stops_in_one_line_when_the_broker_goes_away(tmp_path: Path) -> None:
    from streams.kafka.embedded import EmbeddedBroker
    from streams.kafka.topics import ensure_topics

    b = EmbeddedBroker(log_path=tmp_path / "broker.log").start()
    try:
        ensure_topics(b.bootstrap, 2)
        _products(b.bootstrap, ["F001"])
        tail = subprocess.Popen(
            [sys.executable, "-m", "streams.cli", "alerts", "tail", "--factory", "F001"],
            cwd=tmp_path, env=c2m_env(C2M_KAFKA_BOOTSTRAP=b.bootstrap),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        time.sleep(6)  # caught up, following
        assert tail.poll() is None, tail.communicate()
    finally:
        b.stop()
    stopped = time.monotonic()
    try:
        _, stderr = tail.communicate(timeout=60)
    finally:
        tail.kill()
    took = time.monotonic() - stopped
    lines = stderr.strip().splitlines()
    assert tail.returncode == EXIT_UNREACHABLE, stderr[-3000:]
    assert lines[-1].startswith(f"c2m: error: lost the broker at {b.bootstrap}"), lines
    # before it: at most the note that nothing was there yet, no connection log lines
    assert len(lines) <= 2 and all(ln.startswith("c2m: ") for ln in lines), lines
    assert took < 20, took


def test_a_second_demo_in_a_folder_hears_that_one_runs_there(tmp_path: Path) -> None:
    """Also when the first does not answer (busy with its history): the second said the
    web port was in use (set C2M_WEB_PORT), and with another port, that the embedded
    ClickHouse was in use."""
    import socket

    from tests.helpers.processes import chdb_held_by_another

    with chdb_held_by_another(tmp_path / ".c2m" / "chdb"), socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()  # the first demo's web port: taken, and no answer
        port = taken.getsockname()[1]
        for web_port in (port, free_port()):
            out = c2m("demo", "--duration", "5", cwd=tmp_path,
                      env=c2m_env(C2M_WEB_PORT=str(web_port)))
            line = one_line(out, EXIT_UNREACHABLE)
            assert line.startswith("c2m: error: a c2m demo or worker already runs in this "
                                   "folder"), line
            assert "stop it" in line and "another folder" in line
    assert not (tmp_path / ".c2m" / "embedded.json").exists()  # nothing was started


def test_a_demo_on_a_port_in_use_says_which_variable_to_change(tmp_path: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        out = c2m("demo", "--duration", "5", cwd=tmp_path,
                  env=c2m_env(C2M_WEB_PORT=str(port)))
    line = one_line(out, EXIT_CONFIG)
    assert f"C2M_WEB_PORT={port}: 127.0.0.1:{port} is in use" in line
    assert "set C2M_WEB_PORT to a free port" in line
    assert not (tmp_path / ".c2m" / "embedded.json").exists()  # nothing was started
