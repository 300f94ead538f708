"""`c2m brief` in Python (issue 19): MOQs, the colour x size order plan rounded up to the
MOQ, intervals only with enough days, columns aligned by display width."""

from __future__ import annotations

from typing import Any

from streams.brief import MIN_INTERVAL_DAYS, order_plan, render_brief
from streams.core.calendar import MarketCalendar
from streams.termtext import display_width


def _rows(days_with_data: int) -> list[dict[str, Any]]:
    common = {"as_of": "2026-12-05T04:00:00Z", "from_day": "2026-11-21T16:00:00Z",
              "days_with_data": days_with_data, "category": "袜子", "days": 14}
    rows = [{**common, "dimension": "total", "value": "", "net_units": 1000,
             "recommended_qty": 3960, "qty_low": 0, "qty_high": 423156, "share": 1.0,
             "share_low": 1.0, "share_high": 1.0, "category_daily_rate": 132.0,
             "conversion_rate": 0.05, "return_rate": 0.02}]
    for dim, value, net in (("color", "雾霾蓝", 700), ("color", "black", 300),
                            ("size", "M", 600), ("size", "XL", 400)):
        rows.append({**common, "dimension": dim, "value": value, "net_units": net,
                     "recommended_qty": 3960 * net // 1000, "share": net / 1000,
                     "share_low": net / 1000 - 0.03, "share_high": net / 1000 + 0.03,
                     "conversion_rate": 0.05, "return_rate": 0.02})
    return rows


CELLS = [
    {"color": "雾霾蓝", "size": "M", "price_band": "10-20", "skus": 2, "moq_min": 1400,
     "moq_max": 2000, "net_units": 400},
    {"color": "雾霾蓝", "size": "XL", "price_band": "10-20", "skus": 1, "moq_min": 5000,
     "moq_max": 5000, "net_units": 300},
    {"color": "black", "size": "M", "price_band": "10-20", "skus": 1, "moq_min": 1400,
     "moq_max": 1400, "net_units": 200},
    {"color": "black", "size": "XL", "price_band": "10-20", "skus": 1, "moq_min": 3000,
     "moq_max": 3000, "net_units": 100},
    {"color": "black", "size": "S", "price_band": "10-20", "skus": 1, "moq_min": 800,
     "moq_max": 800, "net_units": 0},  # no demand: not ordered
]


def test_order_plan_rounds_each_colour_size_up_to_its_moq() -> None:
    rows = order_plan(_rows(14), CELLS, run_days=30)
    plan = {(r["color"], r["size"]): r for r in rows if r["dimension"] == "color_size"}
    assert set(plan) == {("雾霾蓝", "M"), ("雾霾蓝", "XL"), ("black", "M"), ("black", "XL")}
    blue_m = plan[("雾霾蓝", "M")]
    assert blue_m["need_qty"] == 1584  # ceil(3960 * 400 / 1000)
    assert blue_m["moq"] == 2000 and blue_m["order_qty"] == 2000  # the larger MOQ
    assert plan[("雾霾蓝", "XL")]["order_qty"] == 5000  # need 1188 < MOQ 5000
    assert plan[("雾霾蓝", "XL")]["covers_days"] == round(30 * 5000 / 1188, 1)
    for p in plan.values():
        assert p["order_qty"] % p["moq"] == 0 and p["order_qty"] >= p["need_qty"]
    total = next(r for r in rows if r["dimension"] == "total")
    assert total["order_qty"] == sum(p["order_qty"] for p in plan.values())
    blue = next(r for r in rows if r["dimension"] == "color" and r["value"] == "雾霾蓝")
    assert (blue["moq_min"], blue["moq_max"], blue["skus"]) == (1400, 5000, 3)


def _tables(text: str) -> list[list[str]]:
    """The aligned tables of a rendered brief (blocks after a title line)."""
    blocks = [b.splitlines()[1:] for b in text.split("\n\n")[1:]]
    return [b for b in blocks if b]


def test_rendered_columns_line_up_with_cjk_values() -> None:
    cal = MarketCalendar("Asia/Shanghai")
    text = render_brief(order_plan(_rows(14), CELLS, 30), "袜子", "", 14, 30, cal)
    assert "起订量 MOQ" in text and "下单计划 order plan" in text
    assert "1,400-5,000" in text  # the colour's SKUs' MOQ range
    assert "as of 2026-12-05 12:00 CST" in text
    assert "95% CI 0 - 423,156" in text
    tables = _tables(text)
    assert len(tables) == 3  # colour, size, order plan
    for lines in tables:  # every column right-aligned to the same display column
        assert len({display_width(ln) for ln in lines}) == 1, lines
        header, *body = lines
        for row in body:  # the header's last column ends where the numbers end
            assert display_width(row) == display_width(header)


def test_no_quantity_interval_without_enough_days() -> None:
    text = render_brief(_rows(3), "袜子", "", 14, 30, MarketCalendar("UTC"))
    assert "423" not in text
    assert f"no interval: 3 days with demand, at least {MIN_INTERVAL_DAYS} needed" in text


def test_a_brief_view_with_other_columns_still_renders() -> None:
    rows = [{"dimension": "total", "value": "", "recommended_qty": 10},
            {"dimension": "color", "value": "红", "forecast_qty": 7, "share": 0.7}]
    text = render_brief(rows, "袜子", "", 14, 30)
    assert "总量 total quantity: 10" in text and "红" in text and "70.0%" in text


def test_jsonable_times_are_utc_whatever_zone_clickhouse_gave() -> None:
    from datetime import datetime, timedelta, timezone

    from streams.app import jsonable

    cst = timezone(timedelta(hours=8))
    rows = [{"as_of": datetime(2026, 12, 5, 4, 0, tzinfo=cst),
             "from_day": datetime(2026, 11, 21, 16, 0), "x": float("nan")}]
    assert jsonable(rows) == [{"as_of": "2026-12-04T20:00:00Z",
                               "from_day": "2026-11-21T16:00:00Z", "x": None}]
