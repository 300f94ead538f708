"""The chaos fault file's ``stall`` / ``stall N`` parsing (used by the chaos tests)."""

from __future__ import annotations

import pytest

from streams.faultfile import StallPoint, stall_skips


@pytest.mark.parametrize(
    ("mode", "skips"),
    [(None, None), ("", None), ("fail", None), ("stall", 0), ("stall 0", 0), ("stall 3", 3),
     ("stall x", None), ("stall 1 2", None), ("stalled", None)],
)
def test_stall_skips(mode: str | None, skips: int | None) -> None:
    assert stall_skips(mode) == skips


def test_stall_point_lets_n_through_then_stalls_every_time() -> None:
    point = StallPoint()
    assert [point.reached("stall 2") for _ in range(4)] == [False, False, True, True]
    assert not StallPoint().reached("fail")
    assert not StallPoint().reached(None)
