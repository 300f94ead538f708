"""The web view's query registry: request arguments are validated, never put into SQL."""

from __future__ import annotations

import re

import pytest

from streams.clickhouse.views import DIMENSIONS, QUERIES, BadRequest, run_view
from streams.web import page_html


class _Client:
    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, object]]] = []

    def query(self, sql: str, parameters: dict[str, object]) -> object:
        self.calls.append((sql, parameters))
        return type("R", (), {"column_names": ("a",), "result_rows": [(1,)]})()


@pytest.mark.parametrize("name", sorted(QUERIES))
def test_every_query_binds_its_parameters(name: str) -> None:
    client = _Client()
    run_view(client, "c2m", name, {})
    sql, params = client.calls[0]
    assert "{db}" not in sql and "{dim}" not in sql
    bound = set(re.findall(r"\{(\w+):\w+\}", sql))
    assert bound == set(params), (bound, params)


@pytest.mark.parametrize(
    ("name", "args"),
    [
        ("breakdown", {"dim": "units; DROP TABLE c2m.demand_state"}),
        ("breakdown", {"horizon": "2h"}),
        ("series", {"window": "60"}),
        ("series", {"points": "-1"}),
        ("series", {"top": "1e9"}),
        ("rolling", {"limit": "100000"}),
        ("nope", {}),
    ],
)
def test_bad_arguments_are_rejected_before_any_query(name: str, args: dict[str, str]) -> None:
    client = _Client()
    with pytest.raises(BadRequest):
        run_view(client, "c2m", name, args)
    assert client.calls == []


def test_dimension_selects_a_prebuilt_query() -> None:
    client = _Client()
    for dim in DIMENSIONS:
        run_view(client, "c2m", "breakdown", {"dim": dim, "horizon": "7d"})
    for dim, (sql, _) in zip(DIMENSIONS, client.calls, strict=True):
        assert f"SELECT if({dim} = '', '其他 other', {dim}) AS key" in sql
        assert "market_rolling" in sql and "demand_rolling" not in sql
    assert all(p["horizon"] == "7d" for _, p in client.calls)


def test_page_is_self_contained_and_every_section_has_a_query_and_renderer() -> None:
    html = page_html()
    assert not re.search(r"(src|href)=\"?https?:", html), "no external resources (offline)"
    renderers = set(re.findall(r"^  (\w+)\(body, data\)", html, re.M))
    for view, render in re.findall(r'data-view="(\w+)"[^>]*data-render="(\w+)"', html):
        assert view in QUERIES and render in renderers, (view, render)
    assert "innerHTML" not in html  # event values are shown with textContent only


def test_page_has_human_headers_and_a_cjk_font_stack() -> None:
    html = page_html()
    for font in ("PingFang SC", "Microsoft YaHei", "Noto Sans CJK SC", "WenQuanYi Zen Hei"):
        assert font in html
    labels = re.search(r"const LABELS = \{(.*?)\};", html, flags=re.S)
    assert labels is not None
    for raw in ("recommended_qty", "net_units_24h", "units_24h", "gmv_24h", "summary"):
        assert re.search(rf'{raw}: "[^"]*[\u4e00-\u9fff][^"]* [a-zA-Z]', labels.group(1)), raw


def test_market_zone_and_loopback() -> None:
    from streams.core.calendar import MarketCalendar
    from streams.web import is_loopback, market_zone

    now = 1_796_400_000  # 2026-12-04
    assert market_zone(MarketCalendar("Asia/Shanghai"), now) == {
        "timezone": "Asia/Shanghai", "abbreviation": "CST", "utc_offset_minutes": 480}
    assert market_zone(MarketCalendar("Europe/Berlin"), now)["abbreviation"] == "CET"
    assert market_zone(MarketCalendar("Asia/Kolkata"), now)["utc_offset_minutes"] == 330
    assert all(is_loopback(a) for a in ("127.0.0.1", "::1", "::ffff:127.0.0.1"))
    assert not any(is_loopback(a) for a in ("10.0.0.5", "172.17.0.1", "", None))
