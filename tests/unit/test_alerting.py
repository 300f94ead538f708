"""Unit tests of the pure alert logic: restock arithmetic, surge shrinkage, lifecycle,
progress."""

from __future__ import annotations

import math
from dataclasses import replace

from streams.core.alerting.book import AlertBook, Finding, alert_id
from streams.core.alerting.inputs import (
    DAY,
    HOUR,
    CumSeries,
    Product,
    SkuCounts,
    SkuHour,
    sku_counts,
)
from streams.core.alerting.progress import PartitionProgress, alert_watermark
from streams.core.alerting.restock import RestockConfig, RestockFinding, position
from streams.core.alerting.restock import evaluate_restock as _evaluate
from streams.core.alerting.stock import SkuSeries
from streams.core.alerting.surge import SurgeConfig, evaluate_surge

T0 = 1_772_323_200  # 2026-03-01T00:00Z
P = Product("SKU1", "F001", "袜子", "白", "M", "0-10", lead_time_days=5, moq=300)


def evaluate_restock(
    product: Product, hours: dict[int, SkuCounts], end: int, first: int, cfg: RestockConfig
) -> RestockFinding | None:
    return _evaluate(product, SkuSeries.build(hours, end), end, first, cfg)


def _set(hours: dict[int, SkuCounts], t: int, **changes: int) -> None:
    """Change fields of one hour (kept as a plain tuple, as the alert service keeps it:
    the rules must read it by index)."""
    b = SkuHour(*hours[t])._replace(**changes)
    hours[t] = sku_counts(*b)


def _steady(days: int, per_hour: int, on_hand: int) -> dict[int, SkuCounts]:
    hours = {t: sku_counts(units=per_hour) for t in range(T0, T0 + days * DAY, HOUR)}
    _set(hours, T0, count_ts=T0 * 1000 + 1, count_on_hand=on_hand)
    return hours


def test_position_counts_from_the_start_of_the_count_hour() -> None:
    hours = _steady(2, 10, 1000)
    _set(hours, T0 + 5 * HOUR, received=50)
    _set(hours, T0 + 5 * HOUR, shipped=50)
    _set(hours, T0 + 6 * HOUR, shipped=80)
    end = T0 + 10 * HOUR
    # 10 hours x 10 units since the count hour (inclusive), +50 received; 80 on the road
    assert position(hours, end, 14 * DAY, 14 * DAY) == (1000 - 100 + 50, 80)
    assert position({T0: sku_counts(units=5)}, end, 14 * DAY, 14 * DAY) is None  # no count


def test_position_windows_end_at_t_whatever_else_was_loaded() -> None:
    """A count older than the count window is not used; restock movements count in the
    transit window only. Extra hours before the windows change nothing (the alerting
    service loads more or less history depending on how many hours one tick evaluates)."""
    end = T0 + 30 * DAY
    hours = {t: sku_counts(units=1) for t in range(T0 + 10 * DAY, end, HOUR)}
    _set(hours, T0 + 20 * DAY, count_ts=(T0 + 20 * DAY) * 1000, count_on_hand=500)
    _set(hours, T0 + 12 * DAY, shipped=300)  # 18 days before T: outside a 14-day transit window
    _set(hours, T0 + 25 * DAY, shipped=40)
    sold = 10 * 24  # one unit an hour since the count hour
    assert position(hours, end, 14 * DAY, 14 * DAY) == (500 - sold, 40)
    assert position(hours, end, 14 * DAY, 20 * DAY) == (500 - sold, 340)
    assert position(hours, end, 9 * DAY, 14 * DAY) is None  # the count is 10 days old
    more = {**{t: sku_counts(shipped=7, received=3) for t in range(T0, T0 + 10 * DAY, DAY)},
            **hours}
    assert position(more, end, 14 * DAY, 14 * DAY) == position(hours, end, 14 * DAY, 14 * DAY)


def test_long_lead_shipments_stay_in_transit_for_two_lead_times() -> None:
    """A factory with a 30-day lead time shipped a run 20 days ago: it is on the way, so no
    second run is asked for; after two lead times without a receipt it is taken as lost."""
    slow = replace(P, lead_time_days=30)
    cfg = RestockConfig()
    assert cfg.transit_days(30) == 60 and cfg.transit_days(5) == 14
    start = T0 - 70 * DAY
    end = T0 + 14 * DAY
    hours = {t: sku_counts(units=10) for t in range(start, end, HOUR)}  # 240 a day
    _set(hours, T0, count_ts=T0 * 1000 + 1, count_on_hand=8000)
    _set(hours, end - 20 * DAY, shipped=6000)
    r = evaluate_restock(slow, hours, end, start, cfg)
    assert r is not None and r.in_transit == 6000
    # on hand 8000 - 14 x 240 = 4640, + 6000 on the way > 240 x 30.08 = 7220: no alert
    assert r.on_hand == 4640 and not r.firing
    _set(hours, end - 20 * DAY, shipped=0)
    _set(hours, end - 61 * DAY, shipped=6000)  # two lead times ago, never received: lost
    r2 = evaluate_restock(slow, hours, end, start, cfg)
    assert r2 is not None and r2.in_transit == 0 and r2.firing


def test_reorder_point_quantity_and_severity() -> None:
    hours = _steady(3, 10, 2000)  # 240 a day, no variation
    cfg = RestockConfig()
    end = T0 + 3 * DAY
    r = evaluate_restock(P, hours, end, T0, cfg)
    assert r is not None
    assert r.daily_rate == 240 and r.daily_sigma == 0
    protect = 5 + cfg.check_hours / 24
    assert math.isclose(r.reorder_point, 240 * protect)
    assert r.on_hand == 2000 - 720 and not r.firing  # 1280 > 1220
    # 240 * 12 days of cover minus position 1280, rounded up to the MOQ
    assert r.recommended_qty == 1800 and r.recommended_qty % P.moq == 0
    assert math.isclose(r.days_of_cover, 1280 / 240)
    assert r.severity == "warning"
    r2 = evaluate_restock(P, _steady(4, 10, 2000), end + 6 * HOUR, T0, cfg)
    assert r2 is not None and r2.firing  # 1220 >= 1220: fires
    low = _steady(3, 10, 1500)
    r3 = evaluate_restock(P, low, end, T0, cfg)
    assert r3 is not None and r3.firing and r3.severity == "critical"  # 780 / 240 < 5 days
    assert r3.stockout_s is not None and r3.stockout_s < end + 5 * DAY


def test_the_rate_is_per_observed_hour() -> None:
    hours = _steady(2, 10, 5000)
    r = evaluate_restock(P, hours, T0 + DAY + 12 * HOUR, T0, RestockConfig())
    assert r is not None and r.daily_rate == 240  # 36 hours observed, not 1.5 days / 2
    # a SKU listed later: its rate is over its own hours, not diluted by days before it
    late = {t: h for t, h in _steady(3, 10, 5000).items() if t >= T0 + 2 * DAY}
    _set(late, T0 + 2 * DAY, count_ts=(T0 + 2 * DAY) * 1000, count_on_hand=5000)
    r2 = evaluate_restock(P, late, T0 + 3 * DAY, T0, RestockConfig())
    assert r2 is not None and r2.daily_rate == 240 and r2.observed_hours == 24


def test_a_new_sku_selling_out_alerts_in_its_first_hour() -> None:
    """Issue 20: 3 on hand, hundreds sold in its first hour, no earlier history: critical
    at the end of that hour; a healthy new SKU's first hour is not an alarm."""
    hours = {T0: sku_counts(units=400, orders=300, pageviews=900, count_ts=T0 * 1000 + 5,
                         count_on_hand=3)}
    r = evaluate_restock(P, hours, T0 + HOUR, T0, RestockConfig())
    assert r is not None and r.firing and r.severity == "critical"
    assert r.daily_rate == 400 * 24 and r.observed_hours == 1
    assert r.recommended_qty >= 400 * 24 * 5 and r.recommended_qty % P.moq == 0
    healthy = {T0: sku_counts(units=40, count_ts=T0 * 1000 + 5, count_on_hand=20_000)}
    r2 = evaluate_restock(P, healthy, T0 + HOUR, T0, RestockConfig())
    assert r2 is not None and not r2.firing  # 20,000 on hand: 20 days at 960 a day
    # a few sales are no proof of a stockout: 3 sold with 200 on hand and a 5-day lead
    # time (3 x 24 x 5 = 360 at the observed rate, but 3 units say little about a rate)
    noisy = {T0: sku_counts(units=3, count_ts=T0 * 1000 + 5, count_on_hand=200)}
    r3 = evaluate_restock(P, noisy, T0 + HOUR, T0, RestockConfig())
    assert r3 is not None and not r3.firing


def test_out_of_stock_hours_are_not_zero_demand() -> None:
    """Three days out of stock (views go on, no sales), then restocked: the rate is the
    in-stock rate, not diluted by the stockout; the lost units are estimated from the
    views at the in-stock conversion."""
    hours = {t: sku_counts(units=10, orders=8, pageviews=100) for t in range(T0, T0 + 10 * DAY,
                                                                          HOUR)}
    out = range(T0 + 4 * DAY, T0 + 7 * DAY, HOUR)
    for t in out:
        hours[t] = sku_counts(pageviews=100, count_ts=t * 1000 + 1, count_on_hand=0)
    _set(hours, T0, count_ts=T0 * 1000 + 1, count_on_hand=960)
    _set(hours, T0 + 7 * DAY, received=5000)
    _set(hours, T0 + 9 * DAY, count_ts=(T0 + 9 * DAY) * 1000 + 1)
    _set(hours, T0 + 9 * DAY, count_on_hand=5000 - 10 * 24 * 2)
    end = T0 + 10 * DAY
    series = SkuSeries.build(hours, end)
    assert series.oos == list(out)
    r = _evaluate(P, series, end, T0, RestockConfig())
    assert r is not None and r.daily_rate == 240  # not 240 x 7 / 10
    lost = series.lost_hourly(T0, end)
    assert sorted(lost) == list(out)  # every out-of-stock hour, 100 views x 0.1 units each
    assert {round(u, 6) for u, _ in lost.values()} == {10.0}
    assert {round(o, 6) for _, o in lost.values()} == {8.0}


def test_surge_shrinks_sparse_cells_toward_the_parent() -> None:
    cfg = SurgeConfig()
    hour = T0 + 3 * DAY + 12 * HOUR
    parent = CumSeries({hour - d * DAY: 100 for d in (1, 2, 3)} | {hour: 100})
    sparse = CumSeries({hour: 14})  # never seen at this hour before
    s = evaluate_surge(sparse, parent, 0.1, hour, T0, cfg)
    assert s is not None
    assert math.isclose(s.baseline, 10.0)  # all prior: parent 100 x share 0.1
    assert not s.firing  # 14 vs 10 is noise
    busy = CumSeries({hour - d * DAY: 10 for d in (1, 2, 3)} | {hour: 40})
    s2 = evaluate_surge(busy, parent, 0.1, hour, T0, cfg)
    assert s2 is not None and s2.firing and s2.severity == "critical"


def _finding(firing: bool, clear: bool, severity: str = "warning", obs: float = 20) -> Finding:
    return Finding(
        "surge", ("袜子", "color", "白"), firing, clear, severity, "", ("F001",), "袜子", "",
        "color", "白", obs, 5.0, obs / 5.0,
    )


def test_lifecycle_open_update_resolve_cooldown() -> None:
    book = AlertBook(cooldown_hours=3)
    h = T0
    a = book.apply(_finding(True, False), h)
    assert a is not None and a.state == "open" and a.version == 1
    assert a.alert_id == alert_id("surge", ("袜子", "color", "白"), h)
    assert book.apply(_finding(True, False, obs=22), h + HOUR) is None  # not material
    u = book.apply(_finding(True, False, obs=40), h + 2 * HOUR)
    assert u is not None and u.state == "updated" and u.version == 2
    assert book.apply(_finding(False, False), h + 3 * HOUR) is None  # hysteresis band
    r = book.apply(_finding(False, True), h + 4 * HOUR)
    assert r is not None and r.state == "resolved" and r.version == 3
    assert book.apply(_finding(True, False), h + 5 * HOUR) is None  # cooling down
    again = book.apply(_finding(True, False), h + 7 * HOUR)
    assert again is not None and again.alert_id != a.alert_id


def test_critical_does_not_flap_back() -> None:
    book = AlertBook()
    book.apply(_finding(True, False, "critical"), T0)
    f = replace(_finding(True, False, "warning", obs=21), downgrade_ok=False)
    assert book.apply(f, T0 + HOUR) is None  # still in the band: stays critical
    assert book.open[("surge", f.key)].severity == "critical"
    down = book.apply(replace(f, downgrade_ok=True), T0 + 2 * HOUR)
    assert down is not None and down.severity == "warning" and down.version == 2


def test_alert_watermark_waits_for_slow_partitions_not_idle_ones() -> None:
    prog = {
        ("o", 0): PartitionProgress(10_000_000, 10_600_000, 1.0),
        ("o", 1): PartitionProgress(5_000_000, 5_600_000, 1.0),  # slow but being read
    }
    exp = {("o", 0), ("o", 1)}
    kw = {"idle_ms": 900_000, "idle_wall_s": 60.0, "uptime_s": 300.0}
    assert alert_watermark(prog, exp, **kw) == 5_000_000
    prog[("o", 1)] = PartitionProgress(5_000_000, 5_600_000, 120.0)  # quiet for 2 min
    assert alert_watermark(prog, exp, **kw) == 10_000_000
    # a partition without a checkpoint blocks until the worker has run idle_wall_s
    exp.add(("o", 2))
    assert alert_watermark(prog, exp, **{**kw, "uptime_s": 10.0}) is None
    assert alert_watermark(prog, exp, **kw) == 10_000_000
    assert alert_watermark({}, exp, **kw) is None
