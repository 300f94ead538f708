"""Generate the Grafana dashboards in deploy/grafana/dashboards/ from the panel lists below.

    python deploy/grafana/generate.py           # write the JSON files
    python deploy/grafana/generate.py --check   # fail if the JSON files are out of date

A panel is one query plus one call: add ``ch("title", "table", SQL)`` (ClickHouse, with the
plugin's macros ``$__timeFilter(col)``, ``$__timeInterval(col)``, ``$__fromTime``,
``$__toTime``, ``$__interval_s`` and the template variables) or ``prom("title", [EXPR])``
to a list below, then regenerate. tests/integration/test_dashboards.py runs every
ClickHouse query against the real schema in chDB and checks every PromQL expression with
promtool, so a new panel is tested without touching the test.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
OUT = HERE / "dashboards"

CLICKHOUSE = {"type": "grafana-clickhouse-datasource", "uid": "c2m-clickhouse"}
PROMETHEUS = {"type": "prometheus", "uid": "c2m-prometheus"}

#: Filter on the category template variable ("All" is the value __all).
CATEGORY = "(${category:sqlstring} = '__all' OR category = ${category:sqlstring})"
#: The factory template variable ("All" is __all): the factories the data source's user
#: may see. A factory's ClickHouse user (c2m db grant) sees only its own, by row policy,
#: whatever value the variable is given (docs/SECURITY.md).
FACTORY = "${factory:sqlstring}"
#: Market demand (issue 22): the chosen window size inside the dashboard's time range, from
#: c2m.market_demand, where every row comes from at least k shops (a cell below that is
#: folded into its parent: dimensions '' = "other", or withheld). The view reads the serving
#: table by its primary key: only the range is read, whatever the history.
MARKET = (
    "c2m.market_demand(seconds=$window, from_s=toUnixTimestamp($__fromTime), "
    "to_s=toUnixTimestamp($__toTime) + 1)"
)
DEMAND = f"FROM {MARKET}\nWHERE {CATEGORY}"


def other(column: str) -> str:
    """A dimension for display: a folded value ('') shows as other."""
    return f"if({column} = '', '其他 other', {column})"
#: The time of a point: the window's start (local midnight for daily windows, in the
#: market's zone) unless Grafana's interval is longer than the window, then the interval.
TIME = "if($window >= $__interval_s, window_start, $__timeInterval(window_start))"


@dataclass
class Panel:
    title: str
    kind: str  # timeseries | table | stat | barchart
    targets: list[dict[str, Any]]
    datasource: dict[str, str]
    width: int = 12
    height: int = 8
    unit: str | None = None
    description: str = ""
    options: dict[str, Any] = field(default_factory=dict)


def ch(
    title: str, kind: str, sql: str, *, width: int = 12, height: int = 8,
    unit: str | None = None, description: str = "",
) -> Panel:
    """A ClickHouse panel. ``timeseries`` panels return (time, [series label], value...)."""
    target = {
        "datasource": CLICKHOUSE,
        "editorType": "sql",
        "format": 0 if kind == "timeseries" else 1,  # 0 time series, 1 table
        "queryType": "timeSeries" if kind == "timeseries" else "table",  # plugin QueryType
        "rawSql": sql.strip(),
        "refId": "A",
    }
    return Panel(title, kind, [target], CLICKHOUSE, width, height, unit, description)


def prom(
    title: str, exprs: list[tuple[str, str]], *, kind: str = "timeseries", width: int = 12,
    height: int = 8, unit: str | None = None, description: str = "",
) -> Panel:
    """A Prometheus panel: (PromQL, legend) per series."""
    targets = [
        {"datasource": PROMETHEUS, "expr": expr, "legendFormat": legend, "refId": chr(65 + i)}
        for i, (expr, legend) in enumerate(exprs)
    ]
    return Panel(title, kind, targets, PROMETHEUS, width, height, unit, description)


def _top(column: str, n: int) -> str:
    """Restrict a time series to the ``n`` largest values of ``column`` in the range."""
    return (
        f"AND {column} IN (SELECT {column} {DEMAND}\n"
        f"    GROUP BY {column} ORDER BY sum(units) DESC LIMIT {n})"
    )


def _by(column: str, n: int) -> str:
    return (
        f"SELECT {TIME} AS time, {other(column)} AS {column}_, sum(units) AS units\n"
        f"{DEMAND}\n{_top(column, n)}\nGROUP BY time, {column}_ ORDER BY time, {column}_"
    )


FACTORY_PANELS: list[Panel] = [
    ch("Demand in range", "stat", f"""
SELECT sum(units) AS units_total, sum(net_units) AS net_units_total,
       sum(orders) AS orders_total, round(sum(gmv), 2) AS gmv_cny,
       round(orders_total / nullIf(sum(pageviews), 0), 4) AS conversion
{DEMAND}""", width=24, height=4,
       description="Totals of the chosen window size over the time range (event time)."),
    ch("Units by colour", "timeseries", _by("color", 8),
       description="Ordered units per colour (top 8 in range), per window."),
    ch("Units by size", "timeseries", _by("size", 8),
       description="Ordered units per size (top 8 in range), per window."),
    ch("Units by price band", "timeseries", _by("price_band", 8),
       description="Ordered units per catalog price band (CNY)."),
    ch("Conversion by category", "timeseries", f"""
SELECT {TIME} AS time, {other("category")} AS category_,
       sum(orders) / nullIf(sum(pageviews), 0) AS conversion
{DEMAND}
{_top("category", 6)}
GROUP BY time, category_ ORDER BY time, category_""", unit="percentunit",
       description="Orders per page view, per category (top 6 by units)."),
    ch("Top rising cells", "table", f"""
WITH (SELECT max(window_start) FROM {MARKET.replace("$window", "3600")}) AS latest
SELECT {other("category")} AS category_, {other("color")} AS color_,
       {other("size")} AS size_, {other("price_band")} AS price_band_,
       sumIf(units, window_start = latest) AS units_last_hour,
       sumIf(units, window_start = latest - INTERVAL 1 HOUR) AS units_hour_before,
       toInt64(units_last_hour) - toInt64(units_hour_before) AS rise
FROM {MARKET.replace("$window", "3600")}
WHERE window_start >= latest - INTERVAL 1 HOUR AND window_start <= latest AND {CATEGORY}
GROUP BY category_, color_, size_, price_band_
ORDER BY rise DESC, units_last_hour DESC LIMIT 15""",
       description="Units in the newest hourly window of the range against the hour before "
                   "(market rows: cells of fewer than k shops folded as other)."),
    ch("Returns by size", "table", f"""
SELECT {other("size")} AS size_, sum(units) AS ordered, sum(returned_units) AS returned,
       round(returned / nullIf(ordered, 0), 4) AS return_rate
{DEMAND}
GROUP BY size_ ORDER BY returned DESC, ordered DESC""",
       description="Returned units (in the window of the return) against ordered units."),
    ch("Rolling demand (last 24 h of event time)", "table", f"""
SELECT {other("category")} AS category_, {other("color")} AS color_,
       {other("size")} AS size_, {other("price_band")} AS price_band_,
       sum(units) AS units_24h, sum(net_units) AS net_units_24h, sum(orders) AS orders_24h,
       round(sum(gmv), 2) AS gmv_cny_24h, max(as_of) AS as_of_event_time
FROM c2m.market_rolling
WHERE horizon = '24h' AND {CATEGORY}
GROUP BY category_, color_, size_, price_band_
ORDER BY net_units_24h DESC LIMIT 20""",
       description="c2m.market_rolling: as of the newest event time, not the wall clock; "
                   "cells of fewer than k shops folded as other."),
    ch("Open alerts", "table", f"""
SELECT changed_at, kind, severity, state, category,
       if(kind = 'restock', sku, concat(dimension, '=', value)) AS subject,
       recommended_qty, projected_stockout,
       JSONExtractString(message, 'summary_zh') AS summary_zh,
       JSONExtractString(message, 'summary_en') AS summary_en
FROM c2m.alerts FINAL
WHERE state != 'resolved'
  AND (kind != 'restock' OR {FACTORY} = '__all' OR factory_id = {FACTORY})
ORDER BY severity = 'critical' DESC, changed_at DESC LIMIT 50""", width=24, height=9,
       description="Current version of every open restock alert of the chosen factory and "
                   "every market signal (c2m.alerts; times are event time)."),
    ch("Production brief (last 14 days, run covering 30 days)", "table", f"""
WITH b AS (SELECT * FROM c2m.production_brief(days=14, run_days=30,
                                             factory=if({FACTORY} = '__all', '', {FACTORY})))
SELECT category, dimension, value, recommended_qty, qty_low, qty_high,
       round(share, 4) AS share, net_units, lost_units, round(conversion_rate, 4) AS conversion,
       round(return_rate, 4) AS return_rate, method, forecast_from, weekly_growth
FROM b
WHERE category = if(${{category:sqlstring}} = '__all',
                    (SELECT category FROM b WHERE dimension = 'total'
                     ORDER BY net_units DESC LIMIT 1),
                    ${{category:sqlstring}})
ORDER BY dimension = 'total' DESC, dimension, net_units DESC LIMIT 40""", width=24, height=10,
       description="c2m.production_brief of the chosen factory's SKUs: colour mix, size "
                   "curve and price bands; the quantity for a 30-day run from the forecast "
                   "(trend, weekly pattern, promotion days; 95% interval), units lost to "
                   "stockouts; the top category when none is chosen."),
]

_RATE = "$__rate_interval"


def _quantiles(metric: str) -> list[tuple[str, str]]:
    return [
        (f"histogram_quantile({q}, sum by (le) (rate({metric}_bucket[{_RATE}])))", f"p{p}")
        for q, p in ((0.5, 50), (0.95, 95), (0.99, 99))
    ]


PIPELINE_PANELS: list[Panel] = [
    prom("Throughput (events/s consumed)", [
        (f'sum by (topic) (rate(c2m_events_total{{outcome="consumed"}}[{_RATE}]))', "{{topic}}"),
    ], unit="ops"),
    prom("Outcomes (events/s)", [
        (f'sum by (outcome) (rate(c2m_events_total{{outcome!="consumed"}}[{_RATE}]))',
         "{{outcome}}"),
    ], unit="ops"),
    prom("Alerts published (changes per hour)", [
        (f"sum by (kind, severity) (rate(c2m_alerts_total[{_RATE}])) * 3600",
         "{{kind}} {{severity}}"),
    ]),
    prom("Dead letters by reason (per s)", [
        (f"sum by (reason) (rate(c2m_dead_letters_total[{_RATE}]))", "{{reason}}"),
    ], unit="ops"),
    prom("Late and duplicate share", [
        (f'sum(rate(c2m_events_total{{outcome="late"}}[{_RATE}])) / '
         f'sum(rate(c2m_events_total{{outcome="consumed"}}[{_RATE}]))', "late"),
        (f'sum(rate(c2m_events_total{{outcome="duplicate"}}[{_RATE}])) / '
         f'sum(rate(c2m_events_total{{outcome="consumed"}}[{_RATE}]))', "duplicate"),
        (f'sum(rate(c2m_events_total{{outcome="dead_lettered"}}[{_RATE}])) / '
         f'sum(rate(c2m_events_total{{outcome="consumed"}}[{_RATE}]))', "dead-lettered"),
    ], unit="percentunit"),
    prom("Consumer lag (records)", [
        ("sum by (topic) (c2m_consumer_lag_records)", "{{topic}}"),
    ], description="End of each partition's log minus its last flushed position: events "
       "not in ClickHouse yet (grows during a ClickHouse outage)."),
    prom("Sink health and firing alerts", [
        ("min(c2m_sink_healthy)", "sink healthy (1 = writes succeed)"),
        ('count by (alertname) (ALERTS{alertstate="firing"})', "{{alertname}}"),
    ], description="deploy/prometheus/rules.yml: the ops alert rules firing now."),
    prom("Event-time watermark lag", [
        ("max by (topic, partition) (c2m_watermark_lag_seconds)", "{{topic}}[{{partition}}]"),
    ], unit="s", description="Wall clock minus each partition's event-time watermark."),
    prom("End-to-end latency (record timestamp to commit)",
         _quantiles("c2m_end_to_end_latency_seconds"), unit="s"),
    prom("Sink flush latency", _quantiles("c2m_sink_flush_seconds"), unit="s"),
    prom("Sink retries and failures (per s)", [
        (f"sum(rate(c2m_sink_retries_total[{_RATE}]))", "retries"),
        (f"sum by (operation) (rate(c2m_sink_failures_total[{_RATE}]))", "failures {{operation}}"),
    ], unit="ops"),
    prom("Rows written to ClickHouse (per s)", [
        (f"sum by (table) (rate(c2m_sink_rows_total[{_RATE}]))", "{{table}}"),
    ], unit="ops"),
    prom("Batch processing latency", _quantiles("c2m_batch_processing_seconds"), unit="s"),
    prom("State in memory", [
        ("sum(c2m_live_cells)", "window cells"),
        ("sum(c2m_dedup_ids)", "dedup ids"),
        ("sum(c2m_visitor_entries)", "visitor entries"),
    ]),
    prom("Workers and partitions", [
        ("sum by (instance) (c2m_partitions_assigned)", "{{instance}}"),
        ("count(c2m_build_info)", "workers"),
    ]),
    ch("Event-time progress (ClickHouse)", "table", """
SELECT fromUnixTimestamp64Milli(newest_ts, 'UTC') AS newest_event,
       fromUnixTimestamp64Milli(watermark_ms, 'UTC') AS global_watermark,
       (newest_ts - watermark_ms) / 1000 AS watermark_behind_newest_s,
       active_partitions, idle_partitions
FROM c2m.event_time_progress""", height=5),
    ch("Ledger per source partition (last checkpoint)", "table", """
SELECT source_topic, source_partition, last_position, consumed, processed, dead_lettered,
       duplicates, late
FROM c2m.source_progress ORDER BY source_topic, source_partition""", height=10),
    ch("Late events (beyond the correction horizon)", "table", """
SELECT source_topic, count() AS late_events, round(max(lateness_ms) / 1000) AS max_lateness_s,
       max(recorded_at) AS last_recorded
FROM c2m.late_events GROUP BY source_topic ORDER BY late_events DESC""", height=5),
    ch("Demand rows flushed per event-time interval", "timeseries", """
SELECT $__timeInterval(window_start) AS time, count() AS rows
FROM c2m.demand_state
WHERE window_seconds = 300 AND $__timeFilter(window_start)
GROUP BY time ORDER BY time"""),
]

#: The category variable: the catalog's categories (bounded by the catalog, not the history;
#: a factory's user lists the categories of its own products).
CATEGORIES = "SELECT DISTINCT category FROM c2m.products ORDER BY category"
#: The factory variable: the factories whose products the data source's user may read
#: (a factory's user: its own only, by row policy).
FACTORIES = "SELECT DISTINCT factory_id FROM c2m.products_current ORDER BY factory_id"

FACTORY_VARIABLES: list[dict[str, Any]] = [
    {
        "name": "window",
        "label": "Window",
        "type": "custom",
        "query": "300,3600,86400",
        "current": {"text": "3600", "value": "3600"},
        "options": [
            {"text": w, "value": w, "selected": w == "3600"} for w in ("300", "3600", "86400")
        ],
    },
    {
        "name": "category",
        "label": "Category",
        "type": "query",
        "datasource": CLICKHOUSE,
        "query": CATEGORIES,
        "definition": CATEGORIES,
        "includeAll": True,
        "allValue": "__all",
        "current": {"text": "All", "value": "$__all"},
        "refresh": 2,
        "sort": 1,
    },
    {
        "name": "factory",
        "label": "Factory",
        "type": "query",
        "datasource": CLICKHOUSE,
        "query": FACTORIES,
        "definition": FACTORIES,
        "includeAll": True,
        "allValue": "__all",
        "current": {"text": "All", "value": "$__all"},
        "refresh": 2,
        "sort": 1,
    },
]


def _layout(panels: list[Panel]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    x = y = row_h = 0
    for i, p in enumerate(panels, start=1):
        if x + p.width > 24:
            x, y, row_h = 0, y + row_h, 0
        defaults: dict[str, Any] = {}
        if p.unit:
            defaults["unit"] = p.unit
        out.append({
            "id": i,
            "title": p.title,
            "type": p.kind,
            "description": p.description,
            "datasource": p.datasource,
            "gridPos": {"x": x, "y": y, "w": p.width, "h": p.height},
            "fieldConfig": {"defaults": defaults, "overrides": []},
            "options": p.options,
            "targets": p.targets,
        })
        x += p.width
        row_h = max(row_h, p.height)
    return out


def dashboard(
    uid: str, title: str, panels: list[Panel], variables: list[dict[str, Any]],
    time_from: str, refresh: str,
) -> dict[str, Any]:
    return {
        "uid": uid,
        "title": title,
        "tags": ["c2m-pulse"],
        # "": Grafana's default zone, which docker-compose.yml sets from C2M_TIMEZONE
        # (GF_DATE_FORMATS_DEFAULT_TIMEZONE): times show in the market's zone
        "timezone": "",
        "editable": False,
        "schemaVersion": 39,
        "version": 1,
        "refresh": refresh,
        "time": {"from": time_from, "to": "now"},
        "templating": {"list": variables},
        "panels": _layout(panels),
    }


def dashboards() -> dict[str, dict[str, Any]]:
    return {
        "factory-demand.json": dashboard(
            "c2m-factory-demand", "Factory demand", FACTORY_PANELS, FACTORY_VARIABLES,
            "now-24h", "1m",
        ),
        "pipeline-health.json": dashboard(
            "c2m-pipeline-health", "Pipeline health", PIPELINE_PANELS, [], "now-1h", "10s",
        ),
    }


def render(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str]) -> int:
    stale = []
    for name, doc in dashboards().items():
        path = OUT / name
        text = render(doc)
        if "--check" in argv:
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                stale.append(name)
        else:
            OUT.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
    if stale:
        print(f"out of date: {', '.join(stale)} (run python deploy/grafana/generate.py)")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
