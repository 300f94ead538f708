"""The stored market fold (``streams.clickhouse.market``) kept up to date: every window
whose cells changed and the rolling horizons, re-folded every
``C2M_MARKET_REFRESH_SECONDS`` by the process that writes ClickHouse, when a checkpoint
moved since the last refresh.

Not with every flush: a daily window's fold reads every cell of the day and the horizons'
every cell of 7 days, and even the 5-minute and hourly windows' refolds cost the ingest
path 6-8% of its CPU while a backlog is worked off (bench/RESULTS.md). The market rows
are at most one interval (plus one refresh) older than the cells; ``docs/SECURITY.md``
has the measured costs.

A ``mode.Service`` attached to the app of the process that writes ClickHouse (the worker
with the direct sink, or ``c2m writer``), ticked by an ``@app.timer``. It refreshes once at
start and once when stopped (after the demand consumer's final flush: services stop in
reverse order), so a stopped pipeline leaves the market rows of everything it wrote.
Several workers on one ClickHouse: only the alert leader ticks (the fold's versions keep
any interleaving right, but one is enough); every worker refreshes when stopped.

The leader's tick also folds the local days that settled since the last tick into the SKU
days (``streams.clickhouse.sku_days``, migration 0014): the other fold the read path
keeps off the ingest path. Only the process that evaluates the alerts is given them
(``days``), and folds them only while it leads, also when stopping: one folder per
database (a second one at once is detected, ``sku_days.refresh``, but wastes a fold).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from mode import Service

from streams.clickhouse import market, sku_days
from streams.core.calendar import MarketCalendar

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
        pending: market.PendingWindows | None = None,
        short_sizes: Sequence[int] = market.SHORT_SIZES,
        days: tuple[int, MarketCalendar] | None = None,
    ) -> None:
        super().__init__()
        #: (correction horizon in ms, the market's calendar): fold the settled days into
        #: the SKU days on the leader's ticks (None: not this process's job: only the
        #: process that evaluates the alerts folds them)
        self.days = days
        #: the configured window sizes shorter than a day (the stale scans')
        self.short_sizes = tuple(short_sizes)
        #: the windows shorter than a day this process's store refreshed: re-folded by
        #: every process at every tick (the leader's periodic part is for all processes)
        self.pending = pending
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
        """Re-fold the windows this process refreshed since the last tick; then, on the
        leader (or with ``force``), the daily windows that changed and the rolling
        horizons when a checkpoint moved since the last refresh. True when it refolded."""
        async with self._lock:
            flushes = self.flushes()
            folded = False
            try:
                if self.pending is not None and len(self.pending):
                    await self.io(market.refresh_pending, self.client, self.database,
                                  self.pending)
                    folded = True
                if not force and self.leader is not None and not self.leader():
                    # the daily windows and horizons are the leader's; this process's
                    # own windows are folded
                    self.flushes_covered = flushes
                    return folded
                mark = await self.io(market.checkpoint_mark, self.client, self.database)
                if mark != self._mark:
                    await self.io(market.refresh_periodic, self.client, self.database,
                                  self.short_sizes)
                    if self.days is not None and (self.leader is None or self.leader()):
                        # the leader's alone, even when stopping: one folder at a time
                        await self.io(sku_days.refresh, self.client, self.database,
                                      *self.days)
                    self._mark = mark
                    folded = True
            except Exception as exc:  # ClickHouse away: the next tick tries again
                log.warning("market fold or SKU days deferred: %s",
                            str(exc).splitlines()[0][:300])
                return False
            self.flushes_covered = flushes
            if folded:
                self.refreshes += 1
            return folded

    async def _start(self) -> None:
        """Once at start, on every process: the windows shorter than a day of the last 8
        days whose fold is older than their cells (what a process that stopped without
        its last tick left), then a tick."""
        try:
            if self.short_sizes:
                await self.io(market.refresh_stale, self.client, self.database,
                              self.short_sizes, market.STALE_LOOKBACK_S)
        except Exception as exc:  # ClickHouse away: the periodic part scans 3 days
            log.warning("market fold deferred: %s", str(exc).splitlines()[0][:300])
        await self.refresh()

    async def on_started(self) -> None:
        self.add_future(self._start())

    async def on_stop(self) -> None:
        """After the demand consumer's final flush (it stops first): fold what it wrote."""
        await self.refresh(force=True)
