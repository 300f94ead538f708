"""Alert lifecycle: open -> updated* -> resolved, with cooldown and deterministic ids.

An alert is one *episode* of a rule firing for a key (a SKU, or a category x dimension x
value). Its id is a hash of (kind, key, the event-time hour it opened), so evaluating the
same hours again, after a restart or in a replay, yields the same ids and the same
versions. A change is made only when the rule's state really changes:

- open: the rule fires, no episode is open and the key is not cooling down;
- updated: the episode is open and the finding changed materially (severity, or the
  numbers a factory acts on: see ``material``);
- resolved: the rule's clear condition holds (stricter than "not firing": hysteresis),
  after which the key cools down for ``cooldown_hours`` of event time.

Between firing and clear nothing changes, so a value hovering at a threshold does not
flap. The whole state is the open alerts and the cooldowns, both recoverable from the
``c2m.alerts`` rows (``AlertBook.restore``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from typing import Any

from streams.core.alerting.inputs import HOUR

KINDS = ("restock", "surge", "rising_share", "lost_sales")


def alert_id(kind: str, key: tuple[str, ...], opened_hour: int) -> str:
    text = "\x1f".join((kind, *key, str(opened_hour)))
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


@dataclass(frozen=True, slots=True)
class Alert:
    """One version of an alert (what is published and stored)."""

    alert_id: str
    version: int
    kind: str
    state: str  # open | updated | resolved
    severity: str  # critical | warning | info
    key: tuple[str, ...]
    factory_id: str  # restock: the SKU's factory; signals: ""
    factories: tuple[str, ...]  # restock: (factory_id,); market signals: () (they name no factory)
    category: str
    sku: str
    dimension: str
    value: str
    window_start: int  # evaluated hour (epoch s)
    opened_at: int  # end of the hour it opened
    changed_at: int  # end of the evaluated hour
    observed: float
    expected: float
    score: float
    recommended_qty: int = 0
    stockout_s: int | None = None
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Finding:
    """A rule's verdict for one key and hour, with what an alert would carry."""

    kind: str
    key: tuple[str, ...]
    firing: bool
    clear: bool
    severity: str
    factory_id: str
    factories: tuple[str, ...]
    category: str
    sku: str
    dimension: str
    value: str
    observed: float
    expected: float
    score: float
    recommended_qty: int = 0
    stockout_s: int | None = None
    details: dict[str, Any] = field(default_factory=dict)
    #: may a critical alert drop back to this severity? (the rule's own hysteresis)
    downgrade_ok: bool = True


def severity_of(prev: Alert, new: Finding) -> str:
    """Critical stays critical until the rule says the downgrade is clear."""
    if prev.severity == "critical" and new.severity != "critical" and not new.downgrade_ok:
        return "critical"
    return new.severity


def material(prev: Alert, new: Finding) -> bool:
    """Is ``new`` worth an update of ``prev``?"""
    if severity_of(prev, new) != prev.severity:
        return True
    if new.kind == "restock":
        # a day of cover lost since the last published version (score = days of cover)
        return 0 <= new.score <= prev.score - 1.0
    # demand signals: the surge (or share) grew by half again since last published
    return new.observed >= 1.5 * prev.observed and new.observed - prev.observed >= 1


@dataclass(slots=True)
class AlertBook:
    cooldown_hours: int = 24
    open: dict[tuple[str, tuple[str, ...]], Alert] = field(default_factory=dict)
    cooldown_until: dict[tuple[str, tuple[str, ...]], int] = field(default_factory=dict)

    def apply(self, f: Finding, hour: int) -> Alert | None:
        """Feed one finding for ``hour``; return the alert version it produced, if any."""
        k = (f.kind, f.key)
        cur = self.open.get(k)
        end = hour + HOUR
        if cur is None:
            if not f.firing or self.cooldown_until.get(k, 0) > hour:
                return None
            new = Alert(
                alert_id(f.kind, f.key, hour), 1, f.kind, "open", f.severity, f.key,
                f.factory_id, f.factories, f.category, f.sku, f.dimension, f.value,
                hour, end, end, f.observed, f.expected, f.score, f.recommended_qty,
                f.stockout_s, f.details,
            )
            self.open[k] = new
            return new
        if f.clear:
            new = replace(
                cur, version=cur.version + 1, state="resolved", window_start=hour,
                changed_at=end, observed=f.observed, expected=f.expected, score=f.score,
                recommended_qty=f.recommended_qty, stockout_s=f.stockout_s, details=f.details,
            )
            del self.open[k]
            self.cooldown_until[k] = hour + self.cooldown_hours * HOUR
            return new
        if f.firing and material(cur, f):
            new = replace(
                cur, version=cur.version + 1, state="updated", severity=severity_of(cur, f),
                window_start=hour, changed_at=end, observed=f.observed, expected=f.expected,
                score=f.score, recommended_qty=f.recommended_qty, stockout_s=f.stockout_s,
                details=f.details,
            )
            self.open[k] = new
            return new
        return None

    def restore_bound(self, next_hour: int) -> int:
        """To evaluate ``next_hour`` and later, ``restore`` needs every open alert but, of
        the resolved ones, only those resolved in an hour after this bound: an older one's
        cooldown ends by ``next_hour`` (a restart reads fewer alerts than were ever
        raised)."""
        return next_hour - self.cooldown_hours * HOUR

    def restore(self, current: list[Alert]) -> None:
        """Rebuild from the newest version of every alert (``c2m.alerts``), or of every
        alert but the resolved ones at or before ``restore_bound`` of the next hour."""
        self.open.clear()
        self.cooldown_until.clear()
        for a in current:
            k = (a.kind, a.key)
            if a.state == "resolved":
                until = a.window_start + self.cooldown_hours * HOUR
                self.cooldown_until[k] = max(self.cooldown_until.get(k, 0), until)
            else:
                self.open[k] = a
