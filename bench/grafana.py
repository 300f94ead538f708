"""Grafana panel SQL as the ClickHouse data source runs it: template variables replaced,
then the plugin's macros expanded. Shared by ``python -m bench.read`` (timing every panel)
and ``tests/integration/test_dashboards.py`` (every panel runs on real data)."""

from __future__ import annotations

import re
from collections.abc import Callable


def expand(sql: str, frm_s: int, to_s: int, interval_s: int, variables: dict[str, str]) -> str:
    """Grafana's template variables, then the ClickHouse plugin's macros (pkg/macros/
    macros.go of grafana-clickhouse-datasource: ``$__timeFilter(c)`` -> ``c >=
    toDateTime(from) AND c <= toDateTime(to)``, ``$__timeInterval(c)`` ->
    ``toStartOfInterval(toDateTime(c), INTERVAL n second)``, ...)."""

    def var(m: re.Match[str]) -> str:
        name, fmt = m.group(1) or m.group(3), m.group(2)
        value = variables[name]
        if fmt == "sqlstring":
            return "'" + value.replace("'", "''") + "'"
        if fmt is not None:
            raise ValueError(f"variable format {fmt} not handled")
        return value

    sql = re.sub(r"\$\{(\w+)(?::(\w+))?\}|\$(?!__)(\w+)", var, sql)
    ms = (frm_s * 1000, to_s * 1000)
    macros: dict[str, Callable[[str], str]] = {
        r"\$__timeFilter_ms\(([^)]+)\)": lambda c: (
            f"{c} >= fromUnixTimestamp64Milli({ms[0]}) AND {c} <= fromUnixTimestamp64Milli({ms[1]})"
        ),
        r"\$__timeFilter\(([^)]+)\)": lambda c: (
            f"{c} >= toDateTime({frm_s}) AND {c} <= toDateTime({to_s})"
        ),
        r"\$__timeInterval_ms\(([^)]+)\)": lambda c: (
            f"toStartOfInterval(toDateTime64({c}, 3), INTERVAL {interval_s * 1000} millisecond)"
        ),
        r"\$__timeInterval\(([^)]+)\)": lambda c: (
            f"toStartOfInterval(toDateTime({c}), INTERVAL {interval_s} second)"
        ),
    }
    for pattern, fn in macros.items():
        sql = re.sub(pattern, lambda m, fn=fn: fn(m.group(1).strip()), sql)
    sql = (
        sql.replace("$__fromTime_ms", f"fromUnixTimestamp64Milli({ms[0]})")
        .replace("$__toTime_ms", f"fromUnixTimestamp64Milli({ms[1]})")
        .replace("$__fromTime", f"toDateTime({frm_s})")
        .replace("$__toTime", f"toDateTime({to_s})")
        .replace("$__interval_s", str(interval_s))
    )
    if "$" in sql:
        raise ValueError(f"unexpanded macro or variable in:\n{sql}")
    return sql
