"""The periodic half of the stored market fold (``streams.clickhouse.market``): the daily
windows and the rolling horizons, re-folded every ``C2M_MARKET_REFRESH_SECONDS`` by the
process that writes ClickHouse, when a checkpoint moved since the last refresh.

Windows shorter than a day are re-folded by each flush (``DemandStore.refresh``); a daily
window's fold reads every cell of the day and the horizons' every cell of 7 days, so
folding them with every flush (every second at 1,000,000 events a day) would cost far more
than once per interval. Their market rows are at most one interval (plus one refresh) old;
``docs/SECURITY.md`` has the measured costs.

A ``mode.Service`` attached to the app of the process that writes ClickHouse (the worker
with the direct sink, or ``c2m writer``), ticked by an ``@app.timer``. It refreshes once at
start and once when stopped (after the demand consumer's final flush: services stop in
reverse order), so a stopped pipeline leaves the market rows of everything it wrote.
Several workers on one ClickHouse: only the alert leader ticks (the fold's versions keep
any interleaving right, but one is enough); every worker refreshes when stopped.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from mode import Service

from streams.clickhouse import market

log = logging.getLogger(__name__)


class MarketRefresher(Service):
    def __init__(
        self,
        client: Any,
        database: str,
        io: Callable[..., Awaitable[Any]],
        *,
        leader: Callable[[], bool] | None = None,
        flushes: Callable[[], int] | None = None,
    ) -> None:
        super().__init__()
        self.client = client
        self.database = database
        #: runs a blocking ClickHouse call off the event loop (the writer's own thread)
        self.io = io
        #: None: always refresh; else only while it answers True
        self.leader = leader
        #: the flushes of this process so far (``/api/stats``: how many the market rows of
        #: the last refresh are behind)
        self.flushes = flushes or (lambda: 0)
        #: what the last refresh saw: (checkpoints held, sum of their positions)
        self._mark: tuple[int, int] | None = None
        #: flushes of this process the market rows cover (read before the checkpoint mark)
        self.flushes_covered = 0
        self.refreshes = 0
        self._lock = asyncio.Lock()

    async def refresh(self, *, force: bool = False) -> bool:
        """Re-fold the daily windows that changed and the rolling horizons when a
        checkpoint moved since the last refresh. True when it refolded."""
        if not force and self.leader is not None and not self.leader():
            return False
        async with self._lock:
            flushes = self.flushes()
            try:
                mark = await self.io(market.checkpoint_mark, self.client, self.database)
                if mark == self._mark:
                    self.flushes_covered = flushes
                    return False
                await self.io(market.refresh_periodic, self.client, self.database)
            except Exception as exc:  # ClickHouse away: the next tick tries again
                log.warning("market fold deferred: %s", str(exc).splitlines()[0][:300])
                return False
            self._mark = mark
            self.flushes_covered = flushes
            self.refreshes += 1
            return True

    async def on_started(self) -> None:
        self.add_future(self.refresh())

    async def on_stop(self) -> None:
        """After the demand consumer's final flush (it stops first): fold what it wrote."""
        await self.refresh(force=True)
