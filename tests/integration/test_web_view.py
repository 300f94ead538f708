"""The built-in web view, driven by headless Chromium (DevTools protocol) at a phone's width
(390 px) and a laptop's (1280 px): no sideways scrolling, human headers, times in the
market zone and the viewer's, and the numbers ClickHouse holds (issue 19)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import defaultdict
from decimal import ROUND_HALF_UP, Decimal
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import orjson
import pytest

from streams.core.kanon import Row, fold
from streams.sim.model import generate_history
from tests.helpers.processes import produce
from tests.integration.chromium import Chromium

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
#: how the page names a folded dimension (a cell of fewer than k shops: issue 22)
OTHER = "其他 other"
WIDTHS = (390, 1280)
#: what ClickHouse calls columns; none may show on the page (headers are human)
RAW_NAMES = ("recommended_qty", "summary_zh", "summary_en", "net_units_24h", "units_24h",
             "units_1h", "gmv_24h", "orders_24h", "price_band", "changed_at", "qty_low",
             "return_rate", "days_with_data", "hours_24h")


class Page(HTMLParser):
    """What the page marks with data-* attributes: tiles, bars, line points, table rows
    (per section, column -> (raw value, shown text))."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.sections: list[dict[str, str]] = []
        self.tiles: dict[str, str] = {}
        self.bars: dict[str, dict[str, int]] = defaultdict(dict)  # dim -> key -> units
        self.points: dict[tuple[str, int], tuple[int, bool]] = {}  # (key, t) -> units, partial
        self.rows: dict[str, list[dict[str, tuple[str, str]]]] = defaultdict(list)
        self.empty: dict[str, str] = {}
        self._section: dict[str, str] = {}
        self._series = ""
        self._td: tuple[str, str] | None = None
        self._text: list[str] = []
        self._depth = 0
        self._empty = False
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "section" and "data-view" in a:
            self._section = a
            self.sections.append(a)
        view = self._section.get("data-view", "")
        if tag == "div" and a.get("class") == "tile":
            self.tiles[a["data-col"]] = a["data-v"]
        elif tag == "g" and a.get("class") == "bar":
            dim = self._section["data-args"].split("dim=")[1].split("&")[0]
            self.bars[dim][a["data-key"]] = int(a["data-units"])
        elif tag == "g" and a.get("class") == "series":
            self._series = a["data-key"]
        elif tag == "circle" and "data-t" in a:
            self.points[(self._series, int(a["data-t"]))] = (
                int(a["data-units"]), a["data-partial"] == "1")
        elif tag == "tr" and view:
            self.rows[view].append({})
        elif tag == "td" and "data-col" in a:
            self._td, self._text, self._depth = (a["data-col"], a["data-v"]), [], 0
        elif tag == "p" and a.get("class") == "empty":
            self._empty, self._text = True, []
        if self._td is not None and tag != "td":
            self._depth += 1

    def handle_endtag(self, tag: str) -> None:
        view = self._section.get("data-view", "")
        if tag == "td" and self._td is not None:
            col, raw = self._td
            self.rows[view][-1][col] = (raw, " ".join("".join(self._text).split()))
            self._td = None
        elif tag == "p" and self._empty:
            self.empty[view] = "".join(self._text).strip()
            self._empty = False

    def handle_data(self, data: str) -> None:
        if self._td is not None or self._empty:
            self._text.append(data)

    def table(self, view: str) -> list[dict[str, tuple[str, str]]]:
        return [r for r in self.rows[view] if r]


def _shots_dir() -> Path | None:
    out = os.environ.get("C2M_ARTIFACTS")
    return Path(out) if out else None


def _visit_both(url: str, tmp_path: Path, name: str, tz: str) -> dict[int, dict[str, Any]]:
    """The page at both widths, measured, parsed; screenshots in tmp (and artifacts)."""
    out: dict[int, dict[str, Any]] = {}
    with Chromium(tmp_path / "chromium", env={**os.environ, "TZ": tz}) as browser:
        for width in WIDTHS:
            shot = tmp_path / f"{name}-{width}.png"
            got = browser.visit(url, width, shot)
            assert shot.stat().st_size > 20_000
            keep = _shots_dir()
            if keep is not None:  # outside pytest's tmp dir
                keep.mkdir(parents=True, exist_ok=True)
                shutil.copy(shot, keep / shot.name)
            got["page"] = Page(got["html"])
            got["shot"] = shot
            out[width] = got
    return out


def _readable(got: dict[str, Any], width: int) -> None:
    """No sideways scrolling, every section loaded, human words only."""
    assert got["scrollWidth"] <= width, (width, got["scrollWidth"], got["wide"])
    assert not got["wide"], got["wide"]
    page: Page = got["page"]
    assert all(s.get("data-loaded") == "1" for s in page.sections), page.sections
    text: str = got["text"]
    for raw in RAW_NAMES:
        assert raw not in text, raw
    assert "24.00×" not in text
    assert "unavailable" not in text



def to_fixed(x: float, digits: int) -> str:
    """JavaScript's ``x.toFixed(digits)``: the exact binary value rounded, a tie to the
    larger (Python's format rounds a tie to even: 8.25 is "8.2" there, "8.3" here)."""
    return str(Decimal(x).quantize(Decimal(1).scaleb(-digits), rounding=ROUND_HALF_UP))

@pytest.mark.slow
def test_web_view_renders_the_numbers_clickhouse_holds(
    broker: Any, worker_factory: Any, tmp_path: Path
) -> None:
    start_ms = (int(time.time()) // 3600 - 3) * 3_600_000
    events = generate_history(5, start_ms, 3, orders_per_hour=150)
    produce(broker.bootstrap, [(e.topic, e.key.encode(), orjson.dumps(e.value)) for e in events])
    demand = sum(1 for e in events if e.topic != "shop.products")

    # the rolling sections read the market fold of the horizons: refreshed every second here
    worker = worker_factory(C2M_MARKET_REFRESH_SECONDS="1").start()
    worker.wait_consumed(demand)
    deadline = time.monotonic() + 60
    while (stats := worker.stats()) is None or stats["pending_events"] or not stats[
            "flushes"] or stats["market_flushes_behind"]:
        assert time.monotonic() < deadline, stats
        time.sleep(0.3)
    url = f"http://127.0.0.1:{worker.web_port}"
    with pytest.raises(urllib.error.HTTPError) as bad:  # arguments are checked, not run
        urllib.request.urlopen(f"{url}/api/view/breakdown?dim=units;DROP", timeout=5)  # noqa: S310
    assert bad.value.code == 400
    with urllib.request.urlopen(f"{url}/api/view/market", timeout=5) as resp:  # noqa: S310
        assert json.loads(resp.read()) == {"timezone": "Asia/Shanghai", "abbreviation": "CST",
                                           "utc_offset_minutes": 480}

    # a viewer in Berlin: the market's times (China) and the viewer's, both labelled
    # The alert service evaluates hours on its own clock: the page is compared with the
    # open alerts of a visit no evaluation overlapped (asked through /api/alerts).
    for _ in range(5):
        evaluated = worker.stats()["alert_hours_evaluated"]
        pages = _visit_both(f"{url}/view", tmp_path, "web-view-worker", "Europe/Berlin")
        with urllib.request.urlopen(f"{url}/api/alerts", timeout=10) as resp:  # noqa: S310
            open_alerts = len(json.loads(resp.read())["alerts"])
        if worker.stats()["alert_hours_evaluated"] == evaluated:
            break
    else:
        raise AssertionError("the alert service never paused for a page visit")
    assert worker.stop() == 0

    # --- ClickHouse, queried independently after the worker stopped -------------------
    # The page shows market numbers (issue 22): the cells, folded by the reference fold
    # (streams.core.kanon) with the contributors ClickHouse holds, k = 3 (the default).
    # The data spans 3 hours, so "last 24 h" and "last 7 d" hold every hourly window.
    hourly = worker.query(
        "SELECT toUnixTimestamp(window_start), category, color, size, price_band, region, "
        "units, orders, gmv, pageviews, net_units, shops "
        "FROM c2m.demand_by_attribute JOIN (SELECT window_seconds, window_start, category, "
        "color, size, price_band, region, shops FROM c2m.demand_cells FINAL) AS s USING "
        "(window_seconds, window_start, category, color, size, price_band, region) "
        "WHERE window_seconds = 3600"
    )
    assert hourly
    cells: dict[tuple[str, ...], list[Any]] = {}
    for _t, *key, units, orders, gmv, views, net, shops in hourly:
        acc = cells.setdefault(tuple(key), [0, 0, 0.0, 0, 0, set()])
        for i, v in enumerate((units, orders, gmv, views, net)):
            acc[i] += v
        acc[5] |= set(shops)
    day = fold([Row(k, tuple(v[:5]), frozenset(v[5])) for k, v in cells.items()], 3)
    assert day and any(r.level > 0 for r in day)  # the simulated market has 1-shop cells
    total: dict[str, float] = defaultdict(float)
    by_dim: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    by_cell: dict[tuple[str, ...], int] = defaultdict(int)
    for row in day:
        units, orders, gmv, views, net = row.measures
        for k, v in (("units", units), ("orders", orders), ("gmv", gmv),
                     ("pageviews", views), ("net_units", net)):
            total[k] += float(v)
        for dim, key in zip(("color", "size", "price_band"), row.key[1:4], strict=True):
            by_dim[dim][key or OTHER] += int(units)
        by_cell[(row.key[0] or OTHER, *row.key[1:4])] += int(units)
    # per hour: the line chart reads market_demand of each hourly window
    by_hour_color: dict[tuple[str, int], int] = defaultdict(int)
    for row in fold([Row(tuple(h[1:6]), (h[6],), frozenset(h[11]), group=(h[0],))
                     for h in hourly], 3):
        by_hour_color[(row.key[1] or OTHER, int(row.group[0]))] += int(row.measures[0])
    (newest_ms,) = worker.query("SELECT newest_ts FROM c2m.event_time_progress")[0]
    newest_s = int(newest_ms) // 1000
    (first_s,) = worker.query("SELECT toUnixTimestamp(min(window_start)) FROM "
                              "c2m.demand_by_attribute WHERE window_seconds = 300")[0]
    end_1h = (newest_s // 3600 + 1) * 3600  # China: hours are UTC hours
    hours = (newest_s - max(int(first_s), end_1h - 86400)) / 3600
    assert 2 < hours <= 3
    end_5m = (newest_s // 300 + 1) * 300
    five = worker.query(
        "SELECT category, color, size, price_band, region, sum(units), "
        "groupUniqArrayArray(shops) FROM c2m.demand_cells FINAL "
        "WHERE window_seconds = 300 AND toUnixTimestamp(window_start) >= {lo:Int64} "
        "AND toUnixTimestamp(window_start) < {hi:Int64} GROUP BY ALL",
        lo=end_5m - 3600, hi=end_5m,
    )
    last_hour: dict[tuple[str, ...], int] = defaultdict(int)
    for row in fold([Row(tuple(f[:5]), (f[5],), frozenset(f[6])) for f in five], 3):
        last_hour[(row.key[0] or OTHER, *row.key[1:4])] += int(row.measures[0])
    brief_rows = worker.query(
        "SELECT category, dimension, value, net_units, round(share, 4), recommended_qty, "
        "method FROM c2m.production_brief(days=14, run_days=30, factory='')")
    top_category = min((-int(n), c) for c, d, _, n, _, _, _ in brief_rows if d == "total")[1]
    expected_brief = {(d, v, int(n), float(sh), int(q))  # values with demand
                      for c, d, v, n, sh, q, _ in brief_rows if c == top_category and int(n) > 0}
    # a local day that ended inside the history (near midnight in the market) has been
    # forecast by the alert service: then the brief's quantities come with its intervals.
    # The category's total row says which (a value first seen after the forecast's day has
    # none of its own and keeps the trailing mean), as on the page.
    forecast = next(m for c, d, *_, m in brief_rows
                    if c == top_category and d == "total") == "forecast"
    series_total: dict[str, int] = defaultdict(int)
    for (c, _), u in by_hour_color.items():
        series_total[c] += u
    top5 = sorted(series_total.items(), key=lambda kv: (-kv[1], kv[0]))[:5]

    for width, got in pages.items():
        _readable(got, width)
        dom: Page = got["page"]
        text: str = got["text"]
        # times: the market's with its zone, the viewer's (Berlin) next to it
        assert re.search(r"as of \d{4}-\d\d-\d\d \d\d:\d\d CST \(Asia/Shanghai", text), text[:300]
        assert re.search(r"your time \d{4}-\d\d-\d\d \d\d:\d\d (CET|CEST|GMT\+\d) "
                         r"\(Europe/Berlin\)", text), text[:300]

        # summary tiles
        for col in ("units", "orders", "pageviews", "net_units"):
            assert float(dom.tiles[col]) == total[col], col
        assert abs(float(dom.tiles["gmv"]) - total["gmv"]) < 0.01
        assert total["units"] > 0

        # bar charts: the top 10 of each dimension, with their exact units
        for dim in ("color", "size", "price_band"):
            shown = dom.bars[dim]
            assert len(shown) == min(10, len(by_dim[dim])), dim
            assert all(by_dim[dim][k] == v for k, v in shown.items()), dim
            hidden = [v for k, v in by_dim[dim].items() if k not in shown]
            assert not hidden or max(hidden) <= min(shown.values()), dim

        # line chart: units per hour of the top 5 colours (over the hours' market rows),
        # every point; the hour that holds the newest event is marked partial, no other
        expected = {
            (c, t): u for (c, t), u in by_hour_color.items() if c in dict(top5) and u
        }
        assert {k: v[0] for k, v in dom.points.items() if v[0]} == expected
        assert {t for (_, t), (_, partial) in dom.points.items() if partial} == {
            newest_s // 3600 * 3600}
        assert "the hour is not over yet (partial)" in text

        # rolling table: 24 h / 7 d per cell, the last hour from 5-minute windows, and the
        # trend over the hours observed (about 3), not 24
        # (market rows of any horizon: each is folded on its own; a folded dimension is
        # empty)
        rows = dom.table("rolling")
        assert len(rows) == min(15, len(set(by_cell) | set(last_hour))) and rows
        for r in rows:
            cell = (r["category"][0], r["color"][0], r["size"][0], r["price_band"][0])
            assert int(r["units_24h"][0]) == by_cell.get(cell, 0) == int(r["units_7d"][0]), cell
            assert int(r["units_1h"][0]) == last_hour.get(cell, 0), cell
            if by_cell.get(cell):
                ratio = last_hour.get(cell, 0) / (by_cell[cell] / hours)
                assert r["trend"][1].endswith(f"{to_fixed(ratio, 2)}×"), (r["trend"], ratio)
        assert [int(r["units_24h"][0]) for r in rows][: len(by_cell)] == sorted(
            by_cell.values(), reverse=True)[:15]
        assert f"hourly average of the {to_fixed(hours, 1)} h observed" in text

        # production brief: the category with the most net units, values with demand only
        brief = dom.table("brief")
        assert f"Production brief {top_category} · " in text
        assert brief[0]["dimension"][0] == "total" and int(brief[0]["net_units"][0]) > 0
        assert {(r["dimension"][0], r["value"][0], int(r["net_units"][0]),
                 float(r["share"][0]), int(r["recommended_qty"][0])) for r in brief
                } == expected_brief
        for r in brief:  # shares as percentages
            assert r["share"][1] == f"{to_fixed(100 * float(r['share'][0]), 1)}%"
        if forecast:  # the forecast's intervals, and which model
            assert "预测 forecast:" in text and "95% 区间 interval" in text
            assert all(r["qty_range"][0] != "—" for r in brief)
        else:  # 1 day of data: no intervals, and why
            assert "数量区间 qty range" not in text
            assert "quantity ranges need 7+ days" in text

        # alerts: the open ones, or the page says there are none
        if open_alerts:
            assert len(dom.table("alerts")) == min(open_alerts, 20)
        else:
            assert dom.empty.get("alerts") == "暂无未解决的提醒 · No open alerts"
    print(json.dumps({w: str(g["shot"]) for w, g in pages.items()}))


@pytest.mark.slow
def test_web_view_after_a_60_second_demo(tmp_path: Path) -> None:
    """What a newcomer sees after `c2m demo --duration 60`: screenshots at 390 and 1280 px
    (``$C2M_ARTIFACTS``; ``docs/img/web-view-{390,1280}.png`` are from this test) with no
    sideways scrolling, no empty or zero brief, no raw field names and no 24.00x trend."""
    from streams.kafka.embedded import free_port

    env = {k: v for k, v in os.environ.items() if not k.startswith("C2M_")}
    env.update(C2M_WEB_PORT=str(free_port()), C2M_METRICS_PORT=str(free_port()))
    log = tmp_path / "demo.log"
    with open(log, "w") as out:
        demo = subprocess.Popen(
            [sys.executable, "-m", "streams.cli", "demo", "--duration", "120", "--rate", "500"],
            cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT,
        )
    try:
        url = f"http://127.0.0.1:{env['C2M_WEB_PORT']}"
        started = None
        deadline = time.monotonic() + 90
        while started is None:  # the demo's clock starts with its first events
            assert time.monotonic() < deadline and demo.poll() is None, log.read_text()[-3000:]
            try:
                with urllib.request.urlopen(f"{url}/api/stats", timeout=2) as resp:  # noqa: S310
                    if json.loads(resp.read())["consumed"]:
                        started = time.monotonic()
            except OSError:
                pass
            time.sleep(0.5)
        time.sleep(max(0.0, 62 - (time.monotonic() - started)))
        pages = _visit_both(f"{url}/view", tmp_path, "web-view", "Asia/Shanghai")
        assert demo.poll() is None, "the demo stopped before the screenshots"
        # the demo's market has enough shops per cell for the default k = 3: its colours,
        # sizes and price bands are shown, not all folded into '其他 other'
        for dim in ("color", "size", "price_band"):
            with urllib.request.urlopen(  # noqa: S310
                    f"{url}/api/view/breakdown?dim={dim}", timeout=10) as resp:
                bars = {k: int(u) for k, u, *_ in json.loads(resp.read())["rows"]}
            assert bars.get(OTHER, 0) <= 0.4 * sum(bars.values()), (dim, bars)
            assert len([k for k, u in bars.items() if k != OTHER and u]) >= 3, (dim, bars)
    finally:
        demo.terminate()
        demo.wait(timeout=120)
    if os.environ.get("C2M_UPDATE_DOCS_IMG"):  # refresh the README's screenshots
        for width, got in pages.items():
            shutil.copy(got["shot"], ROOT / "docs" / "img" / f"web-view-{width}.png")
    for width, got in pages.items():
        _readable(got, width)
        dom: Page = got["page"]
        brief = dom.table("brief")
        assert brief, dom.empty.get("brief")  # an hour of event time: one complete hour
        assert all(int(r["net_units"][0]) > 0 for r in brief)
        assert int(brief[0]["recommended_qty"][0]) > 0
        assert float(dom.tiles["units"]) > 0
        # the same zone as the viewer: no second time
        assert "your time" not in got["text"] and "CST (Asia/Shanghai" in got["text"]
