"""The flush feeds' columns (migration 0015): windows packed as size << 32 | start."""

from __future__ import annotations

import pytest

from streams.clickhouse.store import feed_columns

DAY = 1_792_879_200  # 2026-10-25 00:00 in Berlin


def test_columns_carry_the_rows_and_their_windows_packed() -> None:
    shared = [(300, DAY), (3600, DAY), (86400, DAY)]
    rows = [
        (300, DAY, "袜子", "蓝", "M", "10-20", "浙江", [1, 2], shared),
        (300, DAY, "杯子", "红", "S", "0-10", "上海", [2**64 - 1], shared),
        # from the sink's wire: lists, not tuples, and a list of its own
        (300, DAY + 300, "袜子", "蓝", "M", "10-20", "浙江", [3], [[300, DAY + 300]]),
        (300, (1 << 32) - 300, "袜子", "蓝", "M", "10-20", "浙江", [4],
         [(300, (1 << 32) - 300)]),
    ]
    columns = feed_columns(rows)
    assert len(columns) == 9
    assert [list(c) for c in columns[:8]] == [[r[i] for r in rows] for i in range(8)]
    assert [[(w >> 32, w & 0xFFFF_FFFF) for w in ws] for ws in columns[8]] == [
        [tuple(w) for w in r[8]] for r in rows]
    assert columns[8][0] == [300 << 32 | DAY, 3600 << 32 | DAY, 86400 << 32 | DAY]
    assert columns[8][0] is columns[8][1]  # a shared list is packed once


@pytest.mark.parametrize("window", [(300, 1 << 32), (300, -300), (1 << 32, DAY)])
def test_a_window_that_does_not_fit_is_refused(window: tuple[int, int]) -> None:
    with pytest.raises(ValueError, match="32 \\+ 32 bits"):
        feed_columns([(300, DAY, "a", "b", "c", "d", "e", [1], [window])])


def test_a_row_without_its_windows_is_refused() -> None:
    with pytest.raises(ValueError, match="9 columns"):
        feed_columns([(300, DAY, "a", "b", "c", "d", "e", [1])])
