"""Where a live demo's event time starts (``streams.demo.live_start_ms``): whatever the
minute the demo starts at, its first hour of event time ends early in the run, so the
brief (hours that have ended) shows within the first minute; and no event is dated
after the wall clock."""

from __future__ import annotations

import pytest

from streams.demo import live_start_ms

HOUR_MS = 3_600_000
NOW = 1_796_522_400_000  # an hour boundary (2026-12-05T02:00Z)


@pytest.mark.parametrize("speed", [1.0, 60.0, 89.0, 600.0])
@pytest.mark.parametrize("duration_s", [60.0, 120.0, 600.0])
def test_the_first_hour_ends_within_40_wall_seconds(speed: float, duration_s: float) -> None:
    span_s = duration_s * speed
    for second in range(0, 3600, 7):
        now = NOW + second * 1000
        start = live_start_ms(now, span_s, speed)
        end = start + int(span_s * 1000)  # where event time is when the demo stops
        assert end <= now
        first_end = (start // HOUR_MS + 1) * HOUR_MS
        wall_s = (first_end - start) / 1000 / speed
        assert 0 < wall_s <= 40, (second, wall_s)
        # and it is an hour boundary the demo's event time reaches
        assert first_end < end or span_s * 1000 < HOUR_MS


def test_a_demo_started_one_minute_past_the_hour_at_the_default_speed() -> None:
    """The case that failed: started at hh:01, the first hour ended 59 event minutes in,
    after the web view test's 62 s had nearly passed."""
    start = live_start_ms(NOW + 60_000, 120 * 60.0, 60.0)
    assert (start // HOUR_MS + 1) * HOUR_MS - start == 40 * 60_000
