"""Market numbers that reveal no single shop (pure): who contributes to a cell, when a
number may be published, and the fold of the cells that may not.

Shops are competitors, so a number published to every factory (``factory.demand-signals``,
the web view's demand sections, the market views and dashboards) must come from at least
``k`` distinct shops (``C2M_MIN_SHOPS_PER_SIGNAL``, default 3).

**Contributors.** The engine records, per cell, the shops whose events it counted, as
*tagged* 64-bit hashes: the shop id's BLAKE2b-64 (the visitor-id hash) with its two lowest
bits saying what the shop did there: ``ORDER`` (0: orders placed: orders, units, GMV),
``VIEW`` (1: page views) or ``RETURN`` (2: cancels and returns). Every measure of a cell
comes from one of these families, so a number set may be published when each family that
is there has at least k shops:

    (orders == 0 or orders >= k) and (views == 0 or views >= k)
    and (returns == 0 or returns >= k) and orders + views + returns > 0

(``publishable``): a cell where one shop sold and three others were only viewed (or only
had returns) does not show that one shop's sales.

**Fold.** A cell (category, colour, size, price band, region) that may not be published
is folded into its parent, level by level (``LEVELS``): first the region (the cells of the
same category, colour, size and price band that could not be published, merged, shown
with region ''), then colour, size and price band (the category's remaining cells, shown
with '' for all four), then the category (the market's remaining cells, every dimension
''). A merged group is published when its union of contributors passes the same rule;
what is left at the end is withheld. '' is never a real attribute value (the contract
needs at least one character), so a folded row cannot be mistaken for a cell. Every
published row is a disjoint group of cells, so sums of published rows are sums over at
least ``k`` shops; a withheld remainder is not published anywhere else in the same
output. (Numbers of different outputs, e.g. an hourly and a 5-minute view, are folded
separately; docs/SECURITY.md states what that does and does not protect.)

The ClickHouse views ``market_demand`` and ``market_rolling`` (migration 0010) implement
this fold in SQL; ``tests/unit/test_kanon.py`` checks them against ``fold`` here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Final

ORDER: Final = 0
VIEW: Final = 1
RETURN: Final = 2
FAMILIES: Final = (ORDER, VIEW, RETURN)
#: the dimensions of a demand cell, in key order
DIMS: Final = ("category", "color", "size", "price_band", "region")
#: how many leading dimensions each fold level keeps (the rest become '')
LEVELS: Final = (5, 4, 1, 0)
FOLDED: Final = ""


def shop_tag(shop_hash: int, family: int) -> int:
    """A shop's contributor tag: its hash with the two lowest bits saying what it did."""
    return (shop_hash & ~3) | family


def counts(tags: Iterable[int]) -> tuple[int, int, int]:
    """Distinct shops per family among contributor tags: (orders, views, returns)."""
    n = [0, 0, 0, 0]
    for t in set(tags):
        n[t & 3] += 1
    return n[ORDER], n[VIEW], n[RETURN]


def publishable(tags: Iterable[int], k: int) -> bool:
    """May a number set built from these contributors be published to everyone?"""
    per_family = counts(tags)
    return sum(per_family) > 0 and all(n == 0 or n >= k for n in per_family)


@dataclass(slots=True)
class Row:
    """A cell (or a folded group): its key (one value per dimension, '' when folded), its
    additive measures, its contributors and its fold level (0 = the cell itself)."""

    key: tuple[str, ...]
    measures: tuple[float, ...]
    shops: frozenset[int]
    level: int = 0
    group: tuple[object, ...] = field(default=())


def _merge(rows: Sequence[Row], key: tuple[str, ...], level: int) -> Row:
    width = len(rows[0].measures)
    sums = tuple(sum(r.measures[i] for r in rows) for i in range(width))
    return Row(key, sums, frozenset().union(*(r.shops for r in rows)), level, rows[0].group)


def fold(
    rows: Iterable[Row], k: int, levels: Sequence[int] = LEVELS,
    group: Callable[[Row], object] | None = None,
) -> list[Row]:
    """The published rows of ``rows`` (see module doc), per ``group`` (e.g. the window):
    cells that pass as they are, then merged groups level by level; the rest withheld."""
    by_group: dict[object, list[Row]] = {}
    for r in rows:
        by_group.setdefault(group(r) if group else r.group, []).append(r)
    out: list[Row] = []
    for members in by_group.values():
        width = len(members[0].key)
        left: list[Row] = []
        for r in members:
            (out if publishable(r.shops, k) else left).append(r)
        for level, keep in enumerate(levels[1:], start=1):
            parents: dict[tuple[str, ...], list[Row]] = {}
            for r in left:
                parents.setdefault(r.key[:keep] + (FOLDED,) * (width - keep), []).append(r)
            left = []
            for key, part in parents.items():
                merged = _merge(part, key, level)
                if publishable(merged.shops, k):
                    out.append(merged)
                else:
                    left.extend(part)
    return out
