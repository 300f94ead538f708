"""Who folds what at a market refresher tick (``streams.market_refresh``): the SKU days
only on the leader, never on a process that stops without being it (two processes redoing
a voided fold at once could empty the table under each other). ClickHouse calls are
recorded by the injected ``io``; the folds themselves run on chDB in
tests/integration/test_sku_days.py."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from streams.clickhouse import market, sku_days
from streams.core.calendar import MarketCalendar
from streams.market_refresh import MarketRefresher

CAL = MarketCalendar("Asia/Shanghai")


def _refresher(leader: bool | None, days: bool = True) -> tuple[MarketRefresher, list[Any]]:
    calls: list[Any] = []
    mark = iter(range(100))

    async def io(fn: Callable[..., Any], *args: Any) -> Any:
        calls.append((fn, args))
        return (1, next(mark)) if fn is market.checkpoint_mark else 0

    r = MarketRefresher("client", "c2m", io, leader=None if leader is None else lambda: leader,
                        days=(172_800_000, CAL) if days else None)
    return r, calls


def _called(calls: list[Any]) -> list[Any]:
    return [fn for fn, _ in calls]


@pytest.mark.parametrize("leader", [None, True])
def test_the_leader_folds_the_settled_days_after_the_market(leader: bool | None) -> None:
    r, calls = _refresher(leader)
    assert asyncio.run(r.refresh())
    assert _called(calls) == [market.checkpoint_mark, market.refresh_periodic,
                              sku_days.refresh]
    assert calls[-1][1] == ("client", "c2m", 172_800_000, CAL)
    calls.clear()
    assert asyncio.run(r.refresh(force=True))  # stopping: the same
    assert _called(calls)[-1] is sku_days.refresh


def test_another_process_never_folds_the_days_even_when_stopping() -> None:
    r, calls = _refresher(False)
    assert not asyncio.run(r.refresh())
    assert _called(calls) == []
    assert asyncio.run(r.refresh(force=True))  # its last market refresh, no days
    assert _called(calls) == [market.checkpoint_mark, market.refresh_periodic]


def test_without_days_nothing_is_folded() -> None:
    r, calls = _refresher(True, days=False)
    assert asyncio.run(r.refresh())
    assert sku_days.refresh not in _called(calls)
