"""``c2m brief``: the production brief, fetched and rendered for a terminal.

The numbers come from the ClickHouse view ``c2m.production_brief`` (one definition, used
by the CLI, the worker's ``/api/brief`` and Grafana). With the embedded chDB only one
process may open the engine: while a demo or worker of this folder holds it, the CLI asks
that process (and checks that it is this folder's); else it reads ClickHouse itself, and
creates nothing (no ``.c2m/`` where no demo ran).

On top of the view, in Python (:func:`with_moq`): a factory orders SKUs, and a SKU (one
colour x size of the category) has a minimum order quantity. The colour, size and price
band rows get the MOQ range of their SKUs, and an order plan per colour x size splits the
category's quantity by each cell's share of the net units and rounds it up to the
largest MOQ of the cell's SKUs. The renderer shows the columns the rows have, so a
brief view with other columns still renders.
"""

from __future__ import annotations

import json
import math
import urllib.error
import urllib.parse
import urllib.request
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from streams.core.calendar import UTC_CALENDAR, MarketCalendar
from streams.errors import EXIT_USAGE, C2MError, ConfigError, SinkRejected, SinkUnavailable
from streams.termtext import table

#: the fewest days with demand for a quantity interval (the day-to-day spread of fewer
#: days says little: with 2 or 3 days the 95% interval reads "0 - 423156")
MIN_INTERVAL_DAYS = 7

_DIM_TITLE = {
    "color": ("颜色结构 colour mix", "颜色 colour"),
    "size": ("尺码曲线 size curve", "尺码 size"),
    "price_band": ("价格带 price band", "价格带 band"),
}


def _epoch(value: Any) -> int | None:
    if isinstance(value, datetime):
        return int((value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp())
    try:
        t = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return int((t if t.tzinfo else t.replace(tzinfo=UTC)).timestamp())


def order_plan(
    rows: list[dict[str, Any]], cells: list[dict[str, Any]], run_days: int
) -> list[dict[str, Any]]:
    """Rows of the brief with MOQs, plus one ``color_size`` row per colour x size with
    demand: ``need_qty`` (the category's quantity times the cell's share of net units),
    ``order_qty`` (rounded up to ``moq``, the largest MOQ of its SKUs) and how many days
    of demand the order covers. Pure: the tests feed it directly."""
    out = [dict(r) for r in rows]
    total = next((r for r in out if r.get("dimension") == "total"), None)
    for r in out:  # the MOQ range of the SKUs with this colour / size / price band
        dim = r.get("dimension")
        if dim in _DIM_TITLE:
            mine = [c for c in cells if c[dim] == r.get("value")]
            if mine:
                r["skus"] = sum(c["skus"] for c in mine)
                r["moq_min"] = min(c["moq_min"] for c in mine)
                r["moq_max"] = max(c["moq_max"] for c in mine)
    if total is None or not cells:
        return out
    by_cell: dict[tuple[str, str], dict[str, Any]] = defaultdict(
        lambda: {"skus": 0, "moq": 0, "moq_min": 1 << 62, "net_units": 0})
    for c in cells:
        cell = by_cell[(c["color"], c["size"])]
        cell["skus"] += c["skus"]
        cell["moq"] = max(cell["moq"], c["moq_max"])
        cell["moq_min"] = min(cell["moq_min"], c["moq_min"])
        cell["net_units"] += c["net_units"]
    positive = sum(c["net_units"] for c in by_cell.values() if c["net_units"] > 0)
    quantity = int(total.get("recommended_qty") or 0)
    plan = []
    for (color, size), c in by_cell.items():
        if c["net_units"] <= 0 or positive <= 0 or quantity <= 0:
            continue
        need = math.ceil(quantity * c["net_units"] / positive)
        moq = max(int(c["moq"]), 1)
        order = math.ceil(need / moq) * moq
        plan.append({
            "category": total.get("category"), "dimension": "color_size",
            "value": f"{color} / {size}", "color": color, "size": size, "skus": c["skus"],
            "moq": moq, "moq_min": c["moq_min"], "net_units": c["net_units"],
            "need_qty": need, "order_qty": order,
            "covers_days": round(run_days * order / need, 1),
        })
    plan.sort(key=lambda p: (-p["need_qty"], p["color"], p["size"]))
    total["order_qty"] = sum(p["order_qty"] for p in plan)
    total["order_cells"] = len(plan)
    return out + plan


def with_moq(
    store: Any, category: str, factory: str, days: int, run_days: int
) -> list[dict[str, Any]]:
    """The brief's rows for one category from ``store`` (an AlertStore), with MOQs and
    the colour x size order plan (:func:`order_plan`)."""
    rows = store.brief(category, factory, days, run_days)
    if not rows:
        return []
    hi = _epoch(rows[0].get("as_of"))
    if hi is None:
        return list(rows)
    lo = _epoch(rows[0].get("from_day")) if rows[0].get("from_day") else None
    cells = store.brief_cells(category, factory, hi - days * 86_400 if lo is None else lo, hi)
    return order_plan(rows, cells, run_days)


class BadBriefRequest(C2MError):
    """The running worker refused the brief's arguments."""

    exit_code = EXIT_USAGE


@dataclass
class BriefAnswer:
    """The brief's rows and, when there are none, the categories that ever had demand
    (most units first; None when the source cannot say)."""

    rows: list[dict[str, Any]]
    categories: list[str] | None = None


def _ask(url: str) -> dict[str, Any] | None:
    """GET a brief from a c2m process; None when nothing (or no c2m worker) answers."""
    try:
        with urllib.request.urlopen(url, timeout=30) as resp:  # noqa: S310 - our own URL
            answer: dict[str, Any] = json.loads(resp.read())
            return answer
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return None  # not a c2m worker there
        # the worker answered: its answer stands (not a fallback that finds chDB busy)
        try:
            why = str(json.loads(exc.read()).get("error") or exc.reason)
        except (ValueError, AttributeError):
            why = str(exc.reason)
        if exc.code == 400:
            raise BadBriefRequest(why) from None
        raise SinkUnavailable(f"the c2m worker at {url.split('?')[0]} answered "
                              f"{exc.code}: {why}") from None
    except (OSError, ValueError):
        return None  # no worker running


def _loopback(host: str) -> str:
    return "127.0.0.1" if host in ("0.0.0.0", "::", "") else host  # noqa: S104 - a wildcard bind


def fetch_brief(
    settings: Any, category: str, factory: str, days: int, run_days: int
) -> BriefAnswer:
    """The brief from the ClickHouse of this folder (or the configured one): read directly,
    or, while a demo or worker holds this folder's embedded ClickHouse, asked of that
    process (checked: it says it holds this ClickHouse, not another folder's)."""
    from streams.clickhouse.client import ChdbInUse, connect

    query = urllib.parse.urlencode(
        {"category": category, "factory": factory, "days": days, "run_days": run_days}
    )
    writer = None
    if settings.sink == "kafka":  # the writer owns ClickHouse (C2M_WRITER_HOST/PORT)
        writer = f"http://{_loopback(settings.writer_host)}:{settings.writer_port}"
        answer = _ask(f"{writer}/api/brief?{query}")
        if answer is not None:
            return BriefAnswer(list(answer["rows"]))
    try:
        client = connect(settings, create=False)  # a read creates no .c2m/
    except ChdbInUse as exc:
        return _from_worker(settings, exc, query)
    except SinkUnavailable as exc:
        if writer is None:
            raise
        raise SinkUnavailable(f"no c2m writer answered at {writer}, and {exc}") from exc
    return _direct(settings, client, category, factory, days, run_days)


def _from_worker(settings: Any, in_use: Exception, query: str) -> BriefAnswer:
    """The brief from the demo or worker that holds this folder's embedded ClickHouse."""
    from streams.query import query_worker
    from streams.runner import running_web_port
    from streams.settings import mask_url

    base = f"http://{_loopback(settings.web_host)}:{running_web_port(settings)}"
    answer = _ask(f"{base}/api/brief?{query}")
    if answer is None:
        raise SinkUnavailable(f"{in_use}; no c2m worker answered at {base} (set C2M_WEB_PORT "
                              "to its port)") from None
    ours = mask_url(settings.effective_clickhouse_url)
    if answer.get("clickhouse") != ours:
        raise SinkUnavailable(
            f"{in_use}; the c2m worker at {base} is another folder's (it uses "
            f"{answer.get('clickhouse') or 'another ClickHouse'}): set C2M_WEB_PORT to the "
            "port of the one in this folder") from None
    rows: list[dict[str, Any]] = list(answer["rows"])
    if rows:
        return BriefAnswer(rows)
    from streams.clickhouse.alerts import DEMAND_CATEGORIES_SQL

    sql = DEMAND_CATEGORIES_SQL.replace("{db}", settings.clickhouse_database)
    try:
        got = query_worker(f"{base}/api/query", sql, timeout=30)
    except C2MError:
        got = None  # the brief stands without the list
    return BriefAnswer(rows, None if got is None else [str(r[0]) for r in got.rows])


def _direct(
    settings: Any, client: Any, category: str, factory: str, days: int, run_days: int
) -> BriefAnswer:
    """The brief read from ClickHouse by this process."""
    from streams.app import jsonable
    from streams.clickhouse.alerts import AlertStore
    from streams.clickhouse.migrations import database_timezone

    db = settings.clickhouse_database
    try:
        zone = database_timezone(client, db)
    except Exception:  # no database yet: the read below says what to run
        zone = None
    if zone is not None and zone != settings.timezone:
        raise ConfigError(f"ClickHouse database {db} holds days in time zone {zone}, but "
                          f"C2M_TIMEZONE is {settings.timezone}: set C2M_TIMEZONE={zone}")
    store = AlertStore(client, db)
    try:
        rows = jsonable(with_moq(store, category, factory, days, run_days))
    except SinkRejected as exc:
        try:
            exists = int(client.command(f"EXISTS TABLE {db}.production_brief"))
        except Exception:  # the first error is the one to report
            raise exc from None
        if exists:
            raise
        raise SinkRejected(f"{exc} (no data yet? run `c2m demo` (or `c2m db migrate`) "
                           "first)") from None
    if rows:
        return BriefAnswer(rows)
    try:
        return BriefAnswer(rows, store.demand_categories())
    except C2MError:
        return BriefAnswer(rows)


def _local(cal: MarketCalendar, rfc3339: Any, fmt: str) -> str:
    """An RFC 3339 UTC time from the brief's rows, in the market's local time and zone."""
    s = _epoch(rfc3339)
    if s is None:
        return str(rfc3339)
    return f"{cal.format(s, fmt)} {cal.abbreviation(s)}"


def _n(v: Any) -> str:
    return f"{int(v):,}" if isinstance(v, (int, float)) and math.isfinite(v) else "-"


def _pct(v: Any, digits: int = 1) -> str:
    return f"{float(v):.{digits}%}" if isinstance(v, (int, float)) else "-"


def _moq(r: dict[str, Any]) -> str:
    lo, hi = r.get("moq_min"), r.get("moq_max")
    if lo is None or hi is None:
        return "-"
    return _n(lo) if lo == hi else f"{_n(lo)}-{_n(hi)}"


def _method_line(total: dict[str, Any], cal: MarketCalendar) -> str:
    """How the quantity was reached: the forecast (its model, growth, promotion days) or
    the trailing mean before the first forecast."""
    if total.get("method") != "forecast":
        return ("预测 method: the trailing mean of the days above (no forecast yet: it is "
                "computed once a local day is complete)")
    start = str(total.get("forecast_from") or "")[:10]
    parts = [f"预测 method: forecast of demand (net units + units lost to stockouts) for "
             f"{total.get('run_days')} days from {start}"]
    model = total.get("forecast_model") or ""
    growth = total.get("weekly_growth")
    if model in ("trend", "market trend") and isinstance(growth, (int, float)):
        parts.append(f"trend {growth:+.1%}/week" + (" (the market's)" if model == "market trend"
                                                    else ""))
    elif model == "step":
        parts.append("level shifted recently: the level since then")
    promo = total.get("promotion_days") or []
    if promo:
        parts.append("promotion days " + ", ".join(str(d)[:10] for d in promo))
    return "; ".join(parts)


#: (key, header, format, right-aligned) of the dimension tables, shown when rows have it
_COLUMNS: list[tuple[str, str, Any, bool]] = [
    ("share", "占比 share", _pct, True),
    ("share_low", "95% 区间 CI", None, True),
    ("recommended_qty", "建议量 qty", _n, True),
    ("net_units", "净销量 net", _n, True),
    ("lost_units", "缺货损失 lost", _n, True),
    ("conversion_rate", "转化 conv", _pct, True),
    ("return_rate", "退货 returns", _pct, True),
    ("moq_min", "起订量 MOQ", None, True),
]


def _dimension_table(dim: str, part: list[dict[str, Any]]) -> list[str]:
    cols = [c for c in _COLUMNS if any(c[0] in r for r in part)]
    headers = [_DIM_TITLE[dim][1]] + [c[1] for c in cols]
    body = []
    for r in part:
        cells = [str(r.get("value", ""))]
        for key, _, fmt, _ in cols:
            if key == "share_low":
                cells.append(f"{_pct(r.get('share_low'))} - {_pct(r.get('share_high'))}")
            elif key == "moq_min":
                cells.append(_moq(r))
            else:
                cells.append(fmt(r.get(key)))
        body.append(cells)
    return table(headers, body, right=set(range(1, len(headers))))


def render_brief(
    rows: list[dict[str, Any]], category: str, factory: str, days: int, run_days: int,
    cal: MarketCalendar = UTC_CALENDAR,
) -> str:
    if not rows:
        return f"no demand for category {category!r} in the last {days} days"
    total = next((r for r in rows if r.get("dimension") == "total"), None)
    who = f", factory {factory}" if factory else ""
    first = rows[0]
    since = (f" since {_local(cal, first['from_day'], '%Y-%m-%d')}"
             if first.get("from_day") else "")
    with_data = first.get("days_with_data")
    out = [f"生产建议 production brief: {category}{who}"]
    if first.get("as_of"):
        out.append(
            f"as of {_local(cal, first['as_of'], '%Y-%m-%d %H:%M')} (event time, the newest "
            f"complete hour), demand over the last {days} local days{since}"
            + (f" ({with_data} with demand)" if with_data is not None else "")
            + f", a run covering {run_days} days"
        )
    if total is not None:
        qty = total.get("recommended_qty")
        forecast = total.get("method") == "forecast"
        if total.get("qty_low") is not None and total.get("qty_high") is not None and (
                forecast or with_data is None or int(with_data) >= MIN_INTERVAL_DAYS):
            interval = f"95% CI {_n(total['qty_low'])} - {_n(total['qty_high'])}"
        elif with_data is not None and int(with_data) < MIN_INTERVAL_DAYS:
            interval = (f"no interval: {with_data} day{'s' if with_data != 1 else ''} with "
                        f"demand, at least {MIN_INTERVAL_DAYS} needed")
        else:
            interval = ""
        facts = [f"net units {_n(total.get('net_units'))}"]
        if isinstance(total.get("category_daily_rate"), (int, float)):
            facts.append(f"{total['category_daily_rate']:,.1f}/day")
        if "conversion_rate" in total:
            facts.append(f"conversion {_pct(total['conversion_rate'], 2)}")
        if "return_rate" in total:
            facts.append(f"returns {_pct(total['return_rate'], 2)}")
        if total.get("lost_units"):
            facts.append(f"lost to stockouts {_n(total['lost_units'])}")
        out.append(f"总量 total quantity: {_n(qty)}" + (f" ({interval})" if interval else "")
                   + "; " + ", ".join(facts))
        out.append(_method_line(total, cal))
        if total.get("order_qty"):
            out.append(f"下单合计 order total: {_n(total['order_qty'])} units, each colour x "
                       f"size rounded up to its MOQ ({total.get('order_cells')} colour x size)")
    for dim in ("color", "size", "price_band"):
        part = [r for r in rows if r.get("dimension") == dim]
        if part:
            out += ["", _DIM_TITLE[dim][0], *_dimension_table(dim, part)]
    plan = [r for r in rows if r.get("dimension") == "color_size"]
    if plan:
        out += ["", "下单计划 order plan: colour x size, rounded up to the largest MOQ of its "
                "SKUs"]
        out += table(
            ["颜色 colour", "尺码 size", "SKU数 SKUs", "需求 need", "起订量 MOQ", "下单 order",
             "可售 covers"],
            [[str(p["color"]), str(p["size"]), str(p["skus"]), _n(p["need_qty"]),
              _n(p["moq"]), _n(p["order_qty"]), f"{p['covers_days']:g} days"] for p in plan],
            right={2, 3, 4, 5, 6},
        )
    return "\n".join(out)
