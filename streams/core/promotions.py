"""Known promotion days (``C2M_PROMOTION_DAYS``): local dates on which shops run a sale.

The forecast lifts those days by the promotion's uplift and the surge rule measures a
promotion hour against a baseline lifted the same way (a sale day is not a surge).

Format: a comma-separated list of local dates ``YYYY-MM-DD`` or ranges
``YYYY-MM-DD..YYYY-MM-DD`` (both ends included), each optionally followed by ``*F``, the
expected traffic factor (``2026-11-11*4``). Without a factor the uplift is estimated from
the promotion days already in the history (their demand against the days around them),
else taken as 1 (no lift) until one has been seen.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta

#: a range longer than this is a typo (a year, not a sale)
MAX_RANGE_DAYS = 31


class PromotionSyntaxError(ValueError):
    """One entry of the promotion calendar cannot be read (the message names it)."""


@dataclass(frozen=True, slots=True)
class PromotionCalendar:
    #: local date ordinal -> the stated factor, or None (estimate it)
    days: dict[int, float | None] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> PromotionCalendar:
        days: dict[int, float | None] = {}
        for raw in text.split(","):
            item = raw.strip()
            if not item:
                continue
            spec, _, factor_text = item.partition("*")
            factor: float | None = None
            if factor_text:
                try:
                    factor = float(factor_text)
                except ValueError:
                    raise PromotionSyntaxError(
                        f"{item!r}: the factor after '*' must be a number, e.g. 2026-11-11*3"
                    ) from None
                if not 0 < factor <= 100:
                    raise PromotionSyntaxError(f"{item!r}: the factor must be in (0, 100]")
            lo_text, sep, hi_text = spec.partition("..")
            try:
                lo = date.fromisoformat(lo_text.strip())
                hi = date.fromisoformat(hi_text.strip()) if sep else lo
            except ValueError:
                raise PromotionSyntaxError(
                    f"{item!r}: expected YYYY-MM-DD or YYYY-MM-DD..YYYY-MM-DD"
                ) from None
            if hi < lo or (hi - lo).days >= MAX_RANGE_DAYS:
                raise PromotionSyntaxError(
                    f"{item!r}: a range runs forward and lasts at most {MAX_RANGE_DAYS} days")
            d = lo
            while d <= hi:
                days[d.toordinal()] = factor
                d += timedelta(days=1)
        return cls(days)

    def __bool__(self) -> bool:
        return bool(self.days)

    def is_promo(self, day: int) -> bool:
        """Is the local date with this ordinal a promotion day?"""
        return day in self.days

    def factor(self, day: int) -> float | None:
        return self.days.get(day)

    def describe(self) -> str:
        if not self.days:
            return "none"
        out = []
        for d in sorted(self.days):
            f = self.days[d]
            out.append(date.fromordinal(d).isoformat() + ("" if f is None else f"*{f:g}"))
        return ",".join(out)


NO_PROMOTIONS = PromotionCalendar()
