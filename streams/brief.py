"""``c2m brief``: the production brief, fetched and rendered for a terminal.

The numbers come from the ClickHouse view ``c2m.production_brief`` (one definition, used
by the CLI, the worker's ``/api/brief`` and Grafana). With the embedded chDB only the
worker process may open the engine, so the CLI asks the worker first.
"""

from __future__ import annotations

import json
import urllib.parse
import urllib.request
from datetime import UTC, datetime
from typing import Any

from streams.core.calendar import UTC_CALENDAR, MarketCalendar
from streams.errors import C2MError
from streams.settings import Settings

_DIM_TITLE = {
    "color": "颜色结构 colour mix",
    "size": "尺码曲线 size curve",
    "price_band": "价格带 price band",
}


def fetch_brief(
    settings: Settings, category: str, factory: str, days: int, run_days: int
) -> list[dict[str, Any]]:
    query = urllib.parse.urlencode(
        {"category": category, "factory": factory, "days": days, "run_days": run_days}
    )
    # the process that owns ClickHouse: the worker, or the writer with C2M_SINK=kafka
    if settings.sink == "kafka":
        host, port = settings.writer_host, settings.writer_port
    else:
        host, port = settings.web_host, settings.web_port
    if host in ("0.0.0.0", "::"):  # noqa: S104 - a wildcard bind is reached on loopback
        host = "127.0.0.1"
    url = f"http://{host}:{port}/api/brief?{query}"
    try:
        with urllib.request.urlopen(url, timeout=30) as resp:
            rows: list[dict[str, Any]] = json.loads(resp.read())["rows"]
            return rows
    except OSError:
        pass  # no worker running: read ClickHouse directly
    from streams.app import jsonable
    from streams.clickhouse.alerts import AlertStore
    from streams.clickhouse.client import connect

    try:
        client = connect(settings)
    except Exception as exc:
        raise C2MError(f"no worker at {url} and ClickHouse unavailable: {exc}") from exc
    return jsonable(AlertStore(client, settings.clickhouse_database).brief(
        category, factory, days, run_days
    ))


def _width(text: str) -> int:
    return sum(2 if ord(ch) > 0x2E80 else 1 for ch in text)


def _pad(text: str, width: int) -> str:
    return text + " " * max(width - _width(text), 0)


def _local(cal: MarketCalendar, rfc3339: Any, fmt: str) -> str:
    """An RFC 3339 UTC time from the brief's rows, in the market's local time and zone."""
    try:
        t = datetime.fromisoformat(str(rfc3339).replace("Z", "+00:00"))
    except ValueError:
        return str(rfc3339)
    s = int(t.replace(tzinfo=t.tzinfo or UTC).timestamp())
    return f"{cal.format(s, fmt)} {cal.abbreviation(s)}"


def render_brief(
    rows: list[dict[str, Any]], category: str, factory: str, days: int, run_days: int,
    cal: MarketCalendar = UTC_CALENDAR,
) -> str:
    if not rows:
        return f"no demand for category {category!r} in the last {days} days"
    total = next((r for r in rows if r["dimension"] == "total"), None)
    who = f", factory {factory}" if factory else ""
    first = rows[0]
    since = (f" since {_local(cal, first['from_day'], '%Y-%m-%d')}"
             if first.get("from_day") else "")
    out = [
        f"生产建议 production brief: {category}{who}",
        f"as of {_local(cal, first['as_of'], '%Y-%m-%d %H:%M')} (event time), demand over "
        f"the last {days} local days{since} ({first.get('days_with_data', days)} with "
        f"demand), a run covering {run_days} days",
    ]
    if total is not None:
        out.append(
            f"总量 total quantity: {total['recommended_qty']} "
            f"(95% CI {total['qty_low']} - {total['qty_high']}); "
            f"net units {total['net_units']}, {total['category_daily_rate']:.1f}/day, "
            f"conversion {total['conversion_rate']:.2%}, returns {total['return_rate']:.2%}"
        )
    for dim in ("color", "size", "price_band"):
        part = [r for r in rows if r["dimension"] == dim]
        if not part:
            continue
        out += ["", _DIM_TITLE[dim]]
        out.append(
            _pad("value", 12) + "  share   (95% CI)         qty      net  conv    returns"
        )
        for r in part:
            out.append(
                f"{_pad(str(r['value']), 12)}  {r['share']:6.1%}  "
                f"({r['share_low']:5.1%} - {r['share_high']:5.1%})  "
                f"{r['recommended_qty']:>7}  {r['net_units']:>7}  "
                f"{r['conversion_rate']:5.1%}  {r['return_rate']:6.1%}"
            )
    return "\n".join(out)
