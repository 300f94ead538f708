"""One line per expected failure (issue 19): settings, statements, ClickHouse's answers,
the Kafka client log cap, terminal widths. The commands themselves run in
tests/integration/test_cli_errors.py."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from clickhouse_connect.driver.exceptions import DatabaseError
from pydantic import ValidationError
from pydantic_settings import SettingsError

from streams.problems import _shown, expected_format, query_problem, settings_problem
from streams.query import StatementError, one_statement, split_statements
from streams.runner import RepeatFilter
from streams.settings import Settings
from streams.termtext import display_width, pad, table


def _problem(monkeypatch: pytest.MonkeyPatch, **env: str) -> str:
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    with pytest.raises((ValidationError, SettingsError)) as info:
        Settings()
    line = settings_problem(info.value)
    assert "\n" not in line
    return line


def test_a_setting_that_is_not_json_names_the_variable_value_and_format(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    line = _problem(monkeypatch, C2M_WINDOW_SECONDS="abc")
    assert line.startswith("C2M_WINDOW_SECONDS='abc' is not valid: expected a JSON list")
    assert "[300,3600,86400]" in line


def test_invalid_settings_each_named_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    line = _problem(monkeypatch, C2M_WEB_PORT="x", c2m_timezone="Mars/Base")
    assert "C2M_WEB_PORT='x' is not valid" in line
    assert "expected an integer >= 0 and <= 65535" in line
    assert "C2M_TIMEZONE='Mars/Base' is not valid" in line and "IANA time zone" in line
    monkeypatch.delenv("C2M_WEB_PORT")
    monkeypatch.delenv("c2m_timezone")
    line = _problem(monkeypatch, C2M_LOG_LEVEL="loud")
    assert line == ("C2M_LOG_LEVEL='loud' is not valid (input should be 'debug', 'info', "
                    "'warning' or 'error'): expected one of debug, info, warning, error")
    monkeypatch.delenv("C2M_LOG_LEVEL")
    line = _problem(monkeypatch, C2M_WINDOW_SECONDS="[300, 3600]")
    assert "must include 300, 3600 and 86400" in line


def test_secret_values_are_never_shown() -> None:
    assert _shown("clickhouse_password", "hunter2") == "(value hidden)"
    assert _shown("kafka_sasl_password", "hunter2") == "(value hidden)"
    assert "hunter2" not in _shown("clickhouse_url", "http://u:hunter2@h:8123")
    assert expected_format("topic_partitions") == "an integer >= 1 and <= 1024"
    assert expected_format("sink") == "one of clickhouse, kafka"
    assert expected_format("alerts_enabled") == "true or false"


@pytest.mark.parametrize(
    ("sql", "statements"),
    [
        ("SELECT 1", ["SELECT 1"]),
        ("SELECT 1;", ["SELECT 1"]),
        ("SELECT 1; -- done\n", ["SELECT 1"]),
        ("SELECT ';' AS a", ["SELECT ';' AS a"]),
        ("SELECT 'it''s; here', `a;b` FROM t", ["SELECT 'it''s; here', `a;b` FROM t"]),
        ("SELECT 'a\\';b'", ["SELECT 'a\\';b'"]),
        ("SELECT 1 /* ; */", ["SELECT 1 /* ; */"]),
        ("SELECT 1 AS a; SELECT 2 AS b", ["SELECT 1 AS a", "SELECT 2 AS b"]),
        ("SELECT 1; SELECT 2, 3;;", ["SELECT 1", "SELECT 2, 3"]),
        (" ; -- nothing", []),
        ("SELECT $$a;b$$ AS x", ["SELECT $$a;b$$ AS x"]),
        ("SELECT $$a'b$$; SELECT 2", ["SELECT $$a'b$$", "SELECT 2"]),
    ],
)
def test_statements_are_split_outside_strings_and_comments(
    sql: str, statements: list[str]
) -> None:
    assert split_statements(sql) == statements


def test_several_statements_are_refused_with_what_to_do() -> None:
    with pytest.raises(StatementError, match="one statement at a time, got 2") as info:
        one_statement("SELECT 1 AS a; SELECT 2 AS b, 3 AS c")
    assert info.value.exit_code == 2
    with pytest.raises(StatementError, match="no SQL statement"):
        one_statement("  ")


def test_clickhouse_errors_as_one_line_with_the_error_name() -> None:
    drop = DatabaseError("Code: 164. DB::Exception: default: Cannot execute query in "
                         "readonly mode. (READONLY)")
    assert query_problem(drop).startswith(
        "ClickHouse refused the query: READONLY: Cannot execute query in readonly mode "
        "(c2m query only reads")
    typo = DatabaseError("Code: 47. DB::Exception: Unknown expression identifier `unitz`. "
                         "Maybe you meant: ['units']. In scope SELECT unitz FROM "
                         "c2m.demand_by_attribute SETTINGS readonly = '1'. "
                         "(UNKNOWN_IDENTIFIER)\nStack trace:\n0. x")
    line = query_problem(typo)
    assert "\n" not in line and "In scope" not in line
    assert line.startswith("ClickHouse refused the query: UNKNOWN_IDENTIFIER: Unknown "
                           "expression identifier `unitz`. Maybe you meant: ['units']")


def test_a_column_typo_suggests_describing_the_table_the_query_read() -> None:
    """Not c2m.demand_by_attribute whatever the table (a newcomer's typo on shop_cells)."""
    typo = DatabaseError("Code: 47. DB::Exception: Unknown expression identifier `unitz`. "
                         "In scope SELECT unitz FROM c2m.shop_cells SETTINGS readonly = '1'. "
                         "(UNKNOWN_IDENTIFIER)")
    for sql in ("SELECT unitz FROM c2m.shop_cells", None):  # the query, else the message
        line = query_problem(typo, sql)
        assert 'c2m query "DESCRIBE c2m.shop_cells"' in line, line
        assert "demand_by_attribute" not in line
    joined = query_problem(typo, "SELECT unitz FROM numbers(3) AS n JOIN c2m.products AS p "
                                 "ON 1 JOIN (SELECT 1) AS q ON 1")
    assert 'DESCRIBE c2m.products"' in joined and "numbers" not in joined
    # no table named anywhere: no table made up either
    bare = DatabaseError("Code: 47. DB::Exception: Unknown expression identifier `unitz`. "
                         "In scope SELECT unitz. (UNKNOWN_IDENTIFIER)")
    line = query_problem(bare, "SELECT unitz")
    assert "DESCRIBE c2m.<table>" in line and "demand_by_attribute" not in line


def test_repeated_kafka_client_logs_are_capped() -> None:
    f = RepeatFilter(interval_s=60)

    def rec(name: str, msg: str) -> logging.LogRecord:
        return logging.LogRecord(name, logging.ERROR, __file__, 1, msg, ("n1",), None)

    passed = [f.filter(rec("aiokafka.conn", "Unable connect to node with id %s")) for _ in
              range(300)]
    assert passed.count(True) == 1
    assert f.filter(rec("kafka.net.manager", "Connection failed: %s"))
    assert all(f.filter(rec("streams.app", "stopping: %s")) for _ in range(3))


def test_display_width_counts_wide_characters_twice() -> None:
    assert display_width("袜子") == 4 and display_width("M") == 1
    assert display_width("雾霾蓝 / XL") == 11
    assert display_width("ＡＢ") == 4  # fullwidth
    assert pad("袜子", 6) == "袜子  " and pad("12", 4, right=True) == "  12"
    lines = table(["颜色 colour", "qty"], [["雾霾蓝", "12"], ["black", "1,400"]], right={1})
    assert lines == ["颜色 colour    qty", "雾霾蓝          12", "black        1,400"]
    assert len({display_width(ln) for ln in lines}) == 1


def test_the_live_table_lists_cells_that_sold_units() -> None:
    from streams.demo import live_rows

    rows = [("t", "袜子", "黑", "M", "0-10", "华东", 3, u, 9.0) for u in (5, 2, 0, 0)]
    assert [r[7] for r in live_rows(rows)] == [5, 2]
    assert len(live_rows(rows * 10, 8)) == 8


def test_closing_lines_say_how_to_run_the_commands(tmp_path: Path) -> None:
    from streams.demo import EXAMPLE_QUERY, closing_lines

    s = Settings(web_port=6071, data_dir=tmp_path / ".c2m")
    text = closing_lines(s, command=".venv/bin/c2m")
    assert "http://127.0.0.1:6071/view" in text
    assert ".venv/bin/c2m query \"SELECT toTimeZone(window_start, 'Asia/Shanghai')" in text
    assert "c2m is not on your PATH: run it as .venv/bin/c2m" in text
    assert f"delete {tmp_path / '.c2m'}/" in text
    assert "window_start >= now() - INTERVAL 1 DAY" in EXAMPLE_QUERY
    assert "not on your PATH" not in closing_lines(s, command="c2m")


def test_factories_of_the_catalog_follow_upserts_and_deletes() -> None:
    import orjson

    from streams.alerts_tail import catalog_factories

    def upsert(sku: str, factory: str) -> tuple[bytes, bytes]:
        return sku.encode(), orjson.dumps({"sku": sku, "factory_id": factory})

    assert catalog_factories([upsert("a", "F1"), upsert("b", "F2"), (b"b", None),
                              upsert("c", "F3"), upsert("c", "F1"), (b"x", b"not json")]
                             ) == {"F1"}
