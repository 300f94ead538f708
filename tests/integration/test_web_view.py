"""The built-in web view, driven by headless Chromium, shows the numbers ClickHouse holds."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from collections import defaultdict
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import orjson
import pytest

from streams.core.kanon import Row, fold
from streams.sim.model import generate_history
from tests.integration.conftest import produce

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
OTHER = "其他 other"


class _Dom(HTMLParser):
    """Collects the elements the page marks with data-* attributes, with their text."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[tuple[str, dict[str, str]]] = []
        self.sections: list[dict[str, str]] = []
        self.tiles: dict[str, str] = {}
        self.bars: dict[str, dict[str, int]] = defaultdict(dict)  # dim -> key -> units
        self.points: dict[tuple[str, int], int] = {}
        self.cells: list[dict[str, str]] = []  # rows of the rolling table
        self._section: dict[str, str] = {}
        self._series = ""
        self._td: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "section" and "data-view" in a:
            self._section = a
            self.sections.append(a)
        view = self._section.get("data-view")
        args = self._section.get("data-args", "")
        if tag == "div" and a.get("class") == "tile":
            self.tiles[a["data-col"]] = a["data-v"]
        elif tag == "g" and a.get("class") == "bar":
            dim = args.split("dim=")[1].split("&")[0]
            self.bars[dim][a["data-key"]] = int(a["data-units"])
        elif tag == "g" and a.get("class") == "series":
            self._series = a["data-key"]
        elif tag == "circle" and "data-t" in a:
            self.points[(self._series, int(a["data-t"]))] = int(a["data-units"])
        elif tag == "tr" and view == "rolling":
            self.cells.append({})
        elif tag == "td" and view == "rolling" and "data-col" in a:
            self._td = a["data-col"]

    def handle_endtag(self, tag: str) -> None:
        if tag == "td":
            self._td = None

    def handle_data(self, data: str) -> None:
        if self._td is not None:
            self.cells[-1][self._td] = self.cells[-1].get(self._td, "") + data


def _chromium(*args: str, user_dir: Path) -> subprocess.CompletedProcess[str]:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "Debian chromium missing (.ci/run installs it)"
    return subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
         "--hide-scrollbars", "--no-first-run", "--window-size=1280,1400",
         f"--user-data-dir={user_dir}", "--virtual-time-budget=8000", *args],
        capture_output=True, text=True, timeout=120, check=False,
    )


@pytest.mark.slow
def test_web_view_renders_the_numbers_clickhouse_holds(
    broker: Any, worker_factory: Any, tmp_path: Path
) -> None:
    start_ms = (int(time.time()) // 3600 - 3) * 3_600_000
    events = generate_history(5, start_ms, 3, orders_per_hour=150)
    produce(broker.bootstrap, [(e.topic, e.key.encode(), orjson.dumps(e.value)) for e in events])
    demand = sum(1 for e in events if e.topic != "shop.products")

    worker = worker_factory().start()
    worker.wait_consumed(demand)
    deadline = time.monotonic() + 60
    while (stats := worker.stats()) is None or stats["pending_events"] or not stats["flushes"]:
        assert time.monotonic() < deadline, stats
        time.sleep(0.3)
    url = f"http://127.0.0.1:{worker.web_port}"
    with pytest.raises(urllib.error.HTTPError) as bad:  # arguments are checked, not run
        urllib.request.urlopen(f"{url}/api/view/breakdown?dim=units;DROP", timeout=5)  # noqa: S310
    assert bad.value.code == 400

    dump = _chromium("--dump-dom", f"{url}/view", user_dir=tmp_path / "chromium")
    assert dump.returncode == 0, dump.stderr[-3000:]
    shot = tmp_path / "web-view.png"
    taken = _chromium(f"--screenshot={shot}", f"{url}/view", user_dir=tmp_path / "chromium")
    assert taken.returncode == 0 and shot.stat().st_size > 10_000, taken.stderr[-3000:]
    if os.environ.get("C2M_ARTIFACTS"):  # keep the screenshot outside pytest's tmp dir
        Path(os.environ["C2M_ARTIFACTS"]).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(os.environ["C2M_ARTIFACTS"]) / "web-view.png")
    assert worker.stop() == 0

    dom = _Dom()
    dom.feed(dump.stdout)
    assert 'data-ready="1"' in dump.stdout, dump.stdout[-3000:]
    assert all(s.get("data-loaded") == "1" for s in dom.sections), dom.sections

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
    # the 24 h horizon: every cell over the three hours, its contributors the union
    cells: dict[tuple[str, ...], list[Any]] = {}
    for _t, *key, units, orders, gmv, views, net, shops in hourly:
        acc = cells.setdefault(tuple(key), [0, 0, 0.0, 0, 0, set()])
        for i, v in enumerate((units, orders, gmv, views, net)):
            acc[i] += v
        acc[5] |= set(shops)
    day = fold([Row(k, tuple(v[:5]), frozenset(v[5])) for k, v in cells.items()], 3)
    assert day and any(r.level > 0 for r in day)  # the simulated market has 1-shop cells
    total = defaultdict(float)
    by_dim: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    by_cell: dict[tuple[str, ...], int] = defaultdict(int)
    for r in day:
        units, orders, gmv, views, net = r.measures
        for k, v in (("units", units), ("orders", orders), ("gmv", gmv),
                     ("pageviews", views), ("net_units", net)):
            total[k] += float(v)
        cat, color, size, band, _region = (x or OTHER for x in r.key)
        for dim, key in (("color", color), ("size", size), ("price_band", band)):
            by_dim[dim][key] += int(units)
        by_cell[(cat, r.key[1], r.key[2], r.key[3])] += int(units)
    # per hour (the line chart reads market_demand of each hourly window)
    by_hour_color: dict[tuple[str, int], int] = defaultdict(int)
    for r in fold([Row(tuple(h[1:6]), (h[6],), frozenset(h[11]), group=(h[0],))
                   for h in hourly], 3):
        by_hour_color[(r.key[1] or OTHER, int(r.group[0]))] += int(r.measures[0])

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

    # line chart: units per hour of the top 5 colours (over the hours' market rows)
    series_total: dict[str, int] = defaultdict(int)
    for (c, _), u in by_hour_color.items():
        series_total[c] += u
    top5 = sorted(series_total.items(), key=lambda kv: (-kv[1], kv[0]))[:5]
    expected = {
        (c, t): u for (c, t), u in by_hour_color.items() if c in dict(top5) and u
    }
    assert {k: v for k, v in dom.points.items() if v} == expected

    # rolling table: units over 24 h / 7 d per market row; last hour from 5-minute windows
    (max_ts,) = worker.query("SELECT max(max_ts) FROM c2m.checkpoints")[0]
    end_1h = (int(max_ts) // 1000 // 300 + 1) * 300
    five = worker.query(
        "SELECT category, color, size, price_band, region, sum(units), "
        "groupUniqArrayArray(shops) FROM c2m.demand_cells FINAL "
        "WHERE window_seconds = 300 AND toUnixTimestamp(window_start) >= {lo:Int64} "
        "AND toUnixTimestamp(window_start) < {hi:Int64} GROUP BY ALL",
        lo=end_1h - 3600, hi=end_1h,
    )
    last_hour: dict[tuple[str, ...], int] = defaultdict(int)
    for r in fold([Row(tuple(f[:5]), (f[5],), frozenset(f[6])) for f in five], 3):
        last_hour[(r.key[0] or OTHER, *r.key[1:4])] += int(r.measures[0])
    rows = [r for r in dom.cells if r]
    # a row of any horizon's market rows (each horizon is folded on its own)
    assert len(rows) == min(15, len(set(by_cell) | set(last_hour))) and rows
    for r in rows:
        # (a folded dimension is an empty cell of the table)
        cell = (r["category"], r.get("color", ""), r.get("size", ""), r.get("price_band", ""))
        assert int(r["units_24h"]) == by_cell.get(cell, 0) == int(r["units_7d"]), cell
        assert int(r["units_1h"]) == last_hour.get(cell, 0), cell
    assert [int(r["units_24h"]) for r in rows][: len(by_cell)] == sorted(
        by_cell.values(), reverse=True)[:15]
    # a token-less caller of a worker that requires tokens gets the same market numbers
    # (and no brief): checked in tests/security; here (loopback) the page had the brief
    print(json.dumps({"screenshot": str(shot)}))
