"""One line for a person: what is wrong and what to do (the ``c2m`` command's errors).

Expected failures end a ``c2m`` command with one line on stderr and an exit code from
:mod:`streams.errors`; the traceback is shown only with ``c2m --debug`` or
``C2M_LOG_LEVEL=debug``. This module turns the failures whose text is not already written
for people into that line: bad settings (pydantic) and ClickHouse's answer to a query.
"""

from __future__ import annotations

import os
import re
import types
import typing
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import SecretStr, ValidationError
from pydantic_settings import SettingsError

from streams.settings import Settings, mask_url

#: the expected format of settings whose type alone does not say it
_FORMATS: dict[str, str] = {
    "window_seconds": "a JSON list of window sizes in seconds that includes 300, 3600 and "
                      "86400, e.g. [300,3600,86400]",
    "price_band_edges": "a JSON list of increasing prices in CNY, e.g. [0,10,20,50,100,200,500]",
    "retention_days": 'a JSON object of window size (s) to days, e.g. {"300": 35, "3600": 400}',
    "timezone": "an IANA time zone name, e.g. Asia/Shanghai, Europe/Berlin or UTC",
    "clickhouse_database": "a plain identifier (letters, digits, _), e.g. c2m",
    "clickhouse_url": "chdb:///path/to/dir or http(s)://host:8123",
    "kafka_bootstrap": "host:port[,host:port], e.g. 127.0.0.1:9092",
    "data_dir": "a directory path, e.g. ./.c2m",
}
_SECRET_HINT = ("password", "secret")


def env_name(field: str) -> str:
    return f"C2M_{field.upper()}"


def _is_secret(field: str) -> bool:
    info = Settings.model_fields.get(field)
    if info is not None and SecretStr in _types(info.annotation):
        return True
    return any(h in field for h in _SECRET_HINT)


def _types(annotation: Any) -> tuple[Any, ...]:
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        return tuple(a for a in typing.get_args(annotation) if a is not type(None))
    return (annotation,)


def expected_format(field: str) -> str:
    """What a value of the setting ``field`` looks like, for people."""
    if field in _FORMATS:
        return _FORMATS[field]
    info = Settings.model_fields.get(field)
    if info is None:
        return "see the README's configuration table"
    (annotation, *_) = _types(info.annotation)
    if typing.get_origin(annotation) is Literal:
        return "one of " + ", ".join(str(a) for a in typing.get_args(annotation))
    bounds = []
    for m in info.metadata:
        for attr, sign in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")):
            if getattr(m, attr, None) is not None:
                bounds.append(f"{sign} {getattr(m, attr)}")
    kind = {int: "an integer", float: "a number", bool: "true or false",
            SecretStr: "text"}.get(annotation, "text")
    if annotation.__class__ is type and annotation.__name__ == "Path":
        kind = "a file path"
    return kind + (" " + " and ".join(bounds) if bounds else "")


def _shown(field: str, value: Any) -> str:
    if _is_secret(field):
        return "(value hidden)"
    text = str(value)
    if "url" in field:
        text = mask_url(text)
    return repr(text) if len(text) <= 80 else repr(text[:77] + "...")


def _env_value(field: str, env: Mapping[str, str]) -> str | None:
    name = env_name(field)
    for key, value in env.items():  # pydantic-settings reads names case-insensitively
        if key.upper() == name:
            return value
    return None


def settings_problem(
    exc: ValidationError | SettingsError,
    options: Mapping[str, str] | None = None,
    env: Mapping[str, str] | None = None,
) -> str:
    """One line naming each bad setting (the variable, its value, never a secret's, and
    the expected format). ``options``: fields given on the command line -> option name."""
    env = os.environ if env is None else env
    options = options or {}
    if isinstance(exc, SettingsError):  # a value pydantic-settings could not even parse
        m = re.search(r'field "([a-z0-9_]+)"', str(exc))
        if m is None:
            return f"invalid settings: {exc}"
        field = m.group(1)
        value = _env_value(field, env)
        return (f"{env_name(field)}={_shown(field, value)} is not valid: expected "
                f"{expected_format(field)}")
    parts = []
    for err in exc.errors():
        loc = err.get("loc") or ()
        msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        if not loc:  # a rule across settings: its message names the variables
            parts.append(msg)
            continue
        field = str(loc[0])
        value = _env_value(field, env)
        if field in options:
            where = f"{options[field]} {_shown(field, err.get('input'))}"
        elif value is not None:
            where = f"{env_name(field)}={_shown(field, value)}"
        else:
            where = f"{env_name(field)}={_shown(field, err.get('input'))}"
        parts.append(f"{where} is not valid ({msg[:1].lower()}{msg[1:]}): expected "
                     f"{expected_format(field)}")
    return "; ".join(parts) if parts else "invalid settings"


# ---------------------------------------------------------------- queries
_CH_NAME = re.compile(r"\(([A-Z][A-Z0-9_]{2,})\)\s*$")
_CUT = (" In scope ", " SETTINGS readonly", " FORMAT Native", " Stack trace",
        ": While executing", ". (", " Expected one of")

#: what to do, per ClickHouse error name, after a query ``c2m query`` ran was refused
QUERY_HINTS: dict[str, str] = {
    "READONLY": "c2m query only reads (SELECT, SHOW, DESCRIBE, EXPLAIN); change data "
                "with c2m reset / c2m skip or a ClickHouse client",
    "UNKNOWN_DATABASE": "no data yet? run `c2m demo` (or `c2m db migrate`) first",
    "UNKNOWN_TABLE": "list the tables with: c2m query \"SHOW TABLES FROM c2m\"",
    # (with the query's own table when it names one: query_problem)
    "UNKNOWN_IDENTIFIER": "list a table's columns with: c2m query \"DESCRIBE c2m.<table>\"",
    "SYNTAX_ERROR": "check the SQL; quote the whole query in double quotes in the shell",
}


def clickhouse_message(exc: BaseException) -> tuple[str | None, str]:
    """(ClickHouse's error name, its first sentence without query text or stack trace)."""
    from streams.clickhouse.errors import REFUSED, error_code

    text = " ".join(str(exc).split())
    code = error_code(exc)
    name = REFUSED.get(code) if code is not None else None
    m = _CH_NAME.search(text)
    if m:
        name = m.group(1)
        text = text[: m.start()].rstrip()
    text = re.sub(r"^Code:\s*\d+\.\s*(DB::Exception:\s*)?", "", text)
    text = re.sub(r"^[a-z_]+: (?=Cannot execute query in readonly mode)", "", text)
    m = re.search(r"\(line \d+, col \d+\)", text)
    if m:
        text = text[: m.end()]
    for cut in _CUT:
        i = text.find(cut)
        if i > 0:
            text = text[:i]
    text = text.rstrip(" .")
    if len(text) > 240:
        text = text[:237] + "..."
    return name, text


#: a table a query reads: after FROM or JOIN, ``db.table`` or ``table``, plain or quoted
#: (group 2 is "(" for a table function or a subquery: not a table)
_TABLE = re.compile(
    r"\b(?:FROM|JOIN)\s+((?:`[^`]+`|\"[^\"]+\"|[A-Za-z_]\w*)"
    r"(?:\.(?:`[^`]+`|\"[^\"]+\"|[A-Za-z_]\w*))?)(\s*\(?)",
    re.IGNORECASE,
)


def query_tables(sql: str) -> list[str]:
    """The tables a query reads (after FROM and JOIN), in order, each once."""
    out: list[str] = []
    for m in _TABLE.finditer(sql):
        if not m.group(2).endswith("(") and m.group(1) not in out:
            out.append(m.group(1))
    return out


def query_problem(exc: BaseException, sql: str | None = None) -> str:
    """One line for a query ClickHouse refused: its error name, message and what to do.
    ``sql``: the query, for a hint that names its table (else ClickHouse's message may)."""
    name, text = clickhouse_message(exc)
    hint = QUERY_HINTS.get(name or "")
    if name == "UNKNOWN_IDENTIFIER":
        # the columns of the table the query read (ClickHouse's message quotes the query
        # after "In scope")
        scope = " ".join(str(exc).split()).partition(" In scope ")[2]
        tables = query_tables(sql or "") or query_tables(scope)
        if tables:
            hint = "list the columns with: " + " or ".join(
                f'c2m query "DESCRIBE {t}"' for t in tables[:2])
    return (f"ClickHouse refused the query: {name or type(exc).__name__}: {text}"
            + (f" ({hint})" if hint else ""))
