"""The market's calendar: where event-time windows start and end in its time zone.

A factory owner's day is the local day of the market (``C2M_TIMEZONE``, an IANA name,
default ``Asia/Shanghai``): 双11 is 11-11 00:00 to 24:00 China time, not 08:00 to 08:00.
So:

- windows of one day and longer start at local midnight (the first instant of a local
  date; a day that skips or repeats an hour for daylight saving lasts 23 or 25 hours).
  Windows of k days start on local dates counted from a Monday (1970-01-05), so 7-day
  windows are ISO weeks;
- windows shorter than a day are aligned to the epoch in UTC (``start = ts - ts % size``)
  when every UTC offset the zone has used since 1970 is a multiple of the size (so they
  also start on the local clock: China, +08:00, all sizes up to an hour; Berlin, +01:00
  and +02:00, likewise). Otherwise (India, +05:30, for hourly windows) they tile each
  local day from its midnight: ``start = day_start + k * size``, the last one cut short
  at the next midnight when the day is not a multiple of the size (a 25-hour day in
  2-hour windows ends with a 1-hour window).

``UTC`` gives the epoch-aligned windows of every size (c2m-pulse before time zones).

Everything is integer epoch seconds. The engine does not ask per event: every window
boundary is a multiple of the *grain* (``grain_s``: the gcd of the window sizes, an hour
and the zone's offsets), so the windows of every size are fixed within one grain and
``grain(n)`` answers once per grain number (``ts_s // grain_s``), cached. The compiled
lanes (``streams/core/_lanes.c``) read the same table.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from functools import cache, reduce
from math import gcd
from typing import Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

DAY: Final = 86_400
HOUR: Final = 3600
#: k-day windows (k > 1) start on local dates counted from this Monday
_WEEK_ANCHOR: Final = date(1970, 1, 5).toordinal()
#: grains cached per calendar before the cache is cleared
_GRAIN_CACHE: Final = 100_000
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


class UnknownTimeZone(ValueError):
    """The name is not an IANA time zone known to this system."""


@cache
def zone_offsets(name: str) -> frozenset[int]:
    """Every UTC offset (seconds) the zone has used since 1970, sampled daily up to 2100
    (an offset in force for less than a day could be missed; none has been)."""
    zone = load_zone(name)
    out: set[int] = set()
    t = datetime(1970, 1, 1, tzinfo=UTC)
    end = datetime(2100, 1, 1, tzinfo=UTC)
    step = timedelta(days=1)
    while t < end:
        off = t.astimezone(zone).utcoffset()
        out.add(int(off.total_seconds()) if off is not None else 0)
        t += step
    return frozenset(out)


def load_zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise UnknownTimeZone(
            f"{name!r} is not an IANA time zone (e.g. Asia/Shanghai, Europe/Berlin, UTC)"
        ) from exc


class MarketCalendar:
    """Window boundaries of the configured sizes in one time zone (see the module doc)."""

    def __init__(self, timezone: str = "UTC", window_seconds: Iterable[int] = (300, 3600, 86_400)):
        sizes = tuple(sorted(set(window_seconds)))
        if not sizes or any(s <= 0 or (DAY % s and s % DAY) for s in sizes):
            raise ValueError("window sizes must be positive and divide or be multiples of a day")
        self.timezone = timezone
        self.zone = load_zone(timezone)
        self.sizes = sizes
        offsets = zone_offsets(timezone)
        #: sub-day sizes (and the SKU hour) aligned to the epoch: every offset divides them
        self.epoch_aligned: dict[int, bool] = {
            s: s < DAY and all(o % s == 0 for o in offsets) for s in (*sizes, HOUR)
        }
        #: every window boundary (and SKU hour boundary) is a multiple of this
        self.grain_s = reduce(gcd, (*sizes, HOUR, *(abs(o) for o in offsets if o)))
        self._days: dict[int, tuple[int, int]] = {}
        self._back: dict[tuple[int, int], int] = {}
        #: grain number -> ``grain(n)``; read directly by the compiled lanes
        self.grains: dict[int, tuple[int, ...]] = {}
        #: one offset since 1970: a local day is always 24 h long
        self.fixed_offset = len(offsets) == 1

    def __repr__(self) -> str:
        return f"MarketCalendar({self.timezone!r}, {self.sizes})"

    # ---------------------------------------------------------------- days
    def local_date(self, ts_s: int) -> date:
        return (_EPOCH + timedelta(seconds=ts_s)).astimezone(self.zone).date()

    def date_start(self, d: date) -> int:
        """The first instant (epoch s) of local date ``d``."""
        t = datetime(d.year, d.month, d.day, tzinfo=self.zone)  # fold=0: before any gap
        s = int(t.timestamp())
        if self.local_date(s) != d:  # midnight skipped: fold=0 maps it before the gap
            s = int(t.replace(fold=1).timestamp())
        return s

    def day(self, ts_s: int) -> tuple[int, int]:
        """(start, end) of the local day holding ``ts_s`` (end = the next day's start)."""
        key = ts_s // self.grain_s  # a day boundary is a multiple of the grain
        got = self._days.get(key)
        if got is None:
            d = self.local_date(ts_s)
            got = (self.date_start(d), self.date_start(d + timedelta(days=1)))
            if len(self._days) >= _GRAIN_CACHE:
                self._days.clear()
            self._days[key] = got
        return got

    # ---------------------------------------------------------------- windows
    def window(self, ts_s: int, size: int) -> tuple[int, int]:
        """(start, end) in epoch seconds of the window of ``size`` seconds holding ts_s."""
        if size < DAY:
            if self.epoch_aligned.get(size, all(o % size == 0 for o in zone_offsets(
                    self.timezone))):
                start = ts_s - ts_s % size
                return start, start + size
            ds, de = self.day(ts_s)
            start = ds + (ts_s - ds) // size * size
            return start, min(start + size, de)
        if size == DAY:
            return self.day(ts_s)
        k = size // DAY
        d = self.local_date(ts_s)
        first = d - timedelta(days=(d.toordinal() - _WEEK_ANCHOR) % k)
        return self.date_start(first), self.date_start(first + timedelta(days=k))

    def hour(self, ts_s: int) -> int:
        """Start of the SKU hour (the hourly window) holding ``ts_s``."""
        return self.window(ts_s, HOUR)[0]

    def grain(self, grain_no: int) -> tuple[int, ...]:
        """For the grain ``grain_no`` (``ts_s // grain_s``): (hour start, then start and end
        of the window of each size in ``sizes``), cached. The engine's hot paths and the
        compiled lanes build cells from this."""
        got = self.grains.get(grain_no)
        if got is None:
            ts_s = grain_no * self.grain_s
            bounds: list[int] = [self.hour(ts_s)]
            for s in self.sizes:
                bounds.extend(self.window(ts_s, s))
            got = tuple(bounds)
            if len(self.grains) >= _GRAIN_CACHE:
                self.grains.clear()
            self.grains[grain_no] = got
        return got

    def end_of(self, size: int, start_s: int) -> int:
        """End of the window of ``size`` that starts at ``start_s``."""
        return self.window(start_s, size)[1]

    # ---------------------------------------------------------------- local days back
    def same_hour_days_back(self, hour_s: int, n: int) -> int:
        """The hour with the same local clock time ``n`` local days before ``hour_s``: what
        "this hour on previous days" means to shoppers. Where that clock time does not
        exist (skipped by daylight saving) the instant is taken with the offset before
        the gap; the result is the start of its hour."""
        if self.fixed_offset and self.epoch_aligned[HOUR]:
            return hour_s - n * DAY
        got = self._back.get((hour_s, n))
        if got is None:
            local = (_EPOCH + timedelta(seconds=hour_s)).astimezone(self.zone)
            d = local.date() - timedelta(days=n)
            t = datetime(d.year, d.month, d.day, local.hour, local.minute, tzinfo=self.zone,
                         fold=local.fold)
            got = self.hour(int(t.timestamp()))
            if len(self._back) >= _GRAIN_CACHE:
                self._back.clear()
            self._back[(hour_s, n)] = got
        return got

    def format(self, ts_s: int, fmt: str = "%Y-%m-%d %H:%M") -> str:
        """Local time as text (for people: summaries, the terminal)."""
        return (_EPOCH + timedelta(seconds=ts_s)).astimezone(self.zone).strftime(fmt)

    def isoformat(self, ts_s: int) -> str:
        """RFC 3339 with the local offset (e.g. 2026-11-11T00:00:00+08:00)."""
        return (_EPOCH + timedelta(seconds=ts_s)).astimezone(self.zone).isoformat()

    def abbreviation(self, ts_s: int) -> str:
        """The zone's short name at ``ts_s`` (CST, CET, CEST) or its offset (+0530)."""
        t = (_EPOCH + timedelta(seconds=ts_s)).astimezone(self.zone)
        name = t.tzname() or ""
        return name if name and name[0] not in "+-" else t.strftime("%z")


UTC_CALENDAR: Final = MarketCalendar("UTC")
