"""The market calendar: local days in the market's zone (issue 23), and the engine's cells
in China time, across a daylight-saving change and in a half-hour zone, against the
independent oracle."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pytest

from streams.core.calendar import MarketCalendar, UnknownTimeZone
from streams.core.config import EngineConfig
from streams.core.engine import DemandEngine, Record
from tests import oracle
from tests.helpers.engine import process


def _utc(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp())


def _local(ts: int, tz: str) -> str:
    return datetime.fromtimestamp(ts, UTC).astimezone(ZoneInfo(tz)).isoformat()


def test_shanghai_days_start_at_local_midnight() -> None:
    cal = MarketCalendar("Asia/Shanghai")
    # 双11 00:30 China time is 11-10 16:30 UTC
    start, end = cal.window(_utc("2026-11-10T16:30:00"), 86_400)
    assert _local(start, "Asia/Shanghai") == "2026-11-11T00:00:00+08:00"
    assert end - start == 86_400
    # hours and 5 minutes stay epoch-aligned (the offset is whole hours)
    assert cal.window(_utc("2026-11-10T16:30:00"), 3600) == (
        _utc("2026-11-10T16:00:00"), _utc("2026-11-10T17:00:00"))
    assert cal.epoch_aligned == {300: True, 3600: True, 86_400: False}
    assert cal.grain_s == 300


def test_berlin_days_last_25_and_23_hours_across_daylight_saving() -> None:
    cal = MarketCalendar("Europe/Berlin")
    # last Sunday of October 2026: clocks go back at 03:00 CEST -> 02:00 CET
    start, end = cal.window(_utc("2026-10-25T12:00:00"), 86_400)
    assert _local(start, "Europe/Berlin") == "2026-10-25T00:00:00+02:00"
    assert _local(end, "Europe/Berlin") == "2026-10-26T00:00:00+01:00"
    assert end - start == 25 * 3600
    # last Sunday of March 2026: 02:00 CET -> 03:00 CEST
    start, end = cal.window(_utc("2026-03-29T12:00:00"), 86_400)
    assert end - start == 23 * 3600
    # the repeated hour 02:00-03:00 local is two distinct hourly windows
    a = cal.window(_utc("2026-10-25T00:30:00"), 3600)
    b = cal.window(_utc("2026-10-25T01:30:00"), 3600)
    assert a != b and _local(a[0], "Europe/Berlin")[11:16] == _local(b[0], "Europe/Berlin")[11:16]
    # the same local hour one day back is 25 h before across the change, 24 h otherwise
    h = _utc("2026-10-25T09:00:00")  # 10:00 CET
    assert h - cal.same_hour_days_back(h, 1) == 25 * 3600
    assert _local(cal.same_hour_days_back(h, 1), "Europe/Berlin").startswith("2026-10-24T10:00")
    h2 = _utc("2026-10-27T09:00:00")
    assert h2 - cal.same_hour_days_back(h2, 1) == 24 * 3600


def test_half_hour_zone_aligns_hours_to_local_time() -> None:
    cal = MarketCalendar("Asia/Kolkata")
    assert cal.epoch_aligned[3600] is False and cal.epoch_aligned[300] is True
    start, end = cal.window(_utc("2026-11-11T10:10:00"), 3600)  # 15:40 IST
    assert _local(start, "Asia/Kolkata") == "2026-11-11T15:00:00+05:30"
    assert end - start == 3600
    assert cal.hour(_utc("2026-11-11T10:10:00")) == start
    day = cal.window(_utc("2026-11-11T10:10:00"), 86_400)
    assert _local(day[0], "Asia/Kolkata") == "2026-11-11T00:00:00+05:30"


def test_utc_is_the_epoch_floor_of_every_size() -> None:
    cal = MarketCalendar("UTC", (300, 3600, 86_400, 7 * 86_400))
    rng = random.Random(1)
    for _ in range(2000):
        t = rng.randrange(1_700_000_000, 1_900_000_000)
        for s in (300, 3600, 86_400):
            assert cal.window(t, s) == (t - t % s, t - t % s + s)
        # weeks start on Monday
        start, end = cal.window(t, 7 * 86_400)
        assert datetime.fromtimestamp(start, UTC).weekday() == 0 and end - start == 7 * 86_400


@pytest.mark.parametrize("tz", ["Asia/Shanghai", "Europe/Berlin", "Asia/Kolkata",
                                "America/Santiago", "UTC"])
def test_grains_fix_every_window_and_agree_with_the_oracle(tz: str) -> None:
    sizes = (300, 3600, 86_400)
    cal = MarketCalendar(tz, sizes)
    rng = random.Random(2)
    for _ in range(3000):
        t = rng.randrange(1_760_000_000, 1_830_000_000)
        g = cal.grain(t // cal.grain_s)
        hour = cal.hour(t)
        assert g[0] == hour
        for i, s in enumerate(sizes):
            start, end = cal.window(t, s)
            assert (g[1 + 2 * i], g[2 + 2 * i]) == (start, end)
            assert start <= t < end
            assert start == oracle.window_start(t, s, tz), (tz, t, s)
            # the whole grain lies in the window
            first = t - t % cal.grain_s
            assert cal.window(first, s) == (start, end)
            assert cal.window(first + cal.grain_s - 1, s) == (start, end)


def test_unknown_zone_is_a_clear_error() -> None:
    with pytest.raises(UnknownTimeZone, match="not an IANA time zone"):
        MarketCalendar("Mars/Olympus")


# ---------------------------------------------------------------- the engine in a zone
PRODUCTS = [
    {"event_id": "p1", "event_type": "product_upsert", "ts": 0, "shop_id": "s", "sku": "A",
     "factory_id": "F1", "category": "袜子", "color": "雾霾蓝", "size": "1-3岁",
     "list_price": 15.0, "lead_time_days": 7, "moq": 100},
    {"event_id": "p2", "event_type": "product_upsert", "ts": 0, "shop_id": "s", "sku": "B",
     "factory_id": "F2", "category": "漱口杯", "color": "樱花粉", "size": "均码",
     "list_price": 120.0, "lead_time_days": 20, "moq": 500},
]


def _events(start_ms: int, hours: int, n: int, seed: int) -> list[tuple[str, dict[str, Any]]]:
    """Orders, page views and returns spread over ``hours`` from ``start_ms``, in order."""
    rng = random.Random(seed)
    out: list[tuple[str, dict[str, Any]]] = []
    for i, ts in enumerate(sorted(rng.randrange(start_ms, start_ms + hours * 3_600_000)
                                  for _ in range(n))):
        sku = "A" if i % 3 else "B"
        region = ("浙江", "广东")[i % 2]
        if i % 4 == 0:
            out.append(("shop.orders", {
                "event_id": f"o{i}", "event_type": "order_placed", "ts": ts, "shop_id": "s",
                "order_id": f"o{i}", "region": region, "buyer_id": "b",
                "lines": [{"sku": sku, "qty": 1 + i % 3, "unit_price": 9.99}]}))
        elif i % 13 == 0:
            out.append(("shop.logistics", {
                "event_id": f"r{i}", "event_type": "returned", "ts": ts, "shop_id": "s",
                "sku": sku, "qty": 1, "region": region}))
        else:
            out.append(("shop.pageviews", {
                "event_id": f"v{i}", "event_type": "page_view", "ts": ts, "shop_id": "s",
                "sku": sku, "visitor_id": f"u{i % 37}", "region": region}))
    return out


def _run(tz: str, events: list[tuple[str, dict[str, Any]]], native: bool) -> dict[Any, Any]:
    eng = DemandEngine(EngineConfig(timezone=tz, native=native))
    for i, p in enumerate(PRODUCTS):
        assert eng.apply_product(Record("shop.products", 0, i, None, None, orjson.dumps(p))) is None
    offsets: dict[str, int] = {}
    recs = []
    for topic, ev in events:
        off = offsets.get(topic, 0)
        offsets[topic] = off + 1
        recs.append(Record(topic, 0, off, ev["ts"] + 1000, None, orjson.dumps(ev)))
    cells: dict[Any, list[int]] = {}
    for i in range(0, len(recs), 777):
        out = process(eng, recs[i : i + 777])
        assert not out.rejected and not out.late
        batch = eng.flush_batch()
        for row in batch.rows:
            cells[row[:9]] = list(row[9:15])  # per (source, cell): the newest flush wins
        eng.flushed(batch)
    merged: dict[Any, list[int]] = {}
    for key, vec in cells.items():
        acc = merged.setdefault(key[2:], [0] * 6)
        for k, v in enumerate(vec):
            acc[k] += v
    return merged


@pytest.mark.parametrize(("tz", "start"), [
    ("Asia/Shanghai", "2026-11-10T14:00:00"),   # 双11 eve 22:00 China time, over UTC midnight
    ("Europe/Berlin", "2026-10-24T20:00:00"),   # across the night clocks go back
    ("Asia/Kolkata", "2026-11-10T16:00:00"),    # +05:30: hours at half past in UTC
])
@pytest.mark.parametrize("native", [True, False])
def test_engine_cells_equal_the_oracle_in_the_market_zone(tz: str, start: str,
                                                          native: bool) -> None:
    events = _events(_utc(start) * 1000, 30, 4000, seed=7)
    want = oracle.demand(PRODUCTS, events, timezone=tz)
    got = _run(tz, events, native)
    assert set(got) == set(want)
    for key, w in want.items():
        g = got[key]
        assert (g[0], g[1], g[3], g[4], g[5]) == (
            w["orders"], w["units"], w["cancelled_units"], w["returned_units"], w["pageviews"]
        ), key
    # the daily rows are the local days: in China time 11-10 and 11-11 (and 11-12)
    days = sorted({k[1] for k in got if k[0] == 86_400})
    assert all(_local(d, tz)[11:19] == "00:00:00" for d in days)
