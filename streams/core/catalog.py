"""The product catalog as of event time.

Each SKU keeps its last few versions ordered by event ``ts``; a demand event is mapped
with the version that was valid at its own timestamp, so the result does not depend on
when the worker happened to read a catalog update (replays give the same numbers).
An event earlier than every known version uses the oldest version: a product that was
on sale must have had attributes, and the first upsert is the best knowledge of them.
"""

from __future__ import annotations

from bisect import bisect_right, insort
from dataclasses import dataclass

from streams.core.pricebands import PriceBands

UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class ProductAttrs:
    """What demand is grouped by, plus what factories need to act on it."""

    category: str
    color: str
    size: str
    price_band: str
    factory_id: str
    list_price: float
    lead_time_days: int
    moq: int


UNKNOWN_PRODUCT = ProductAttrs(UNKNOWN, UNKNOWN, UNKNOWN, UNKNOWN, UNKNOWN, 0.0, 0, 1)


class Catalog:
    """SKU -> versions of ``ProductAttrs`` by event time."""

    __slots__ = ("_bands", "_max_versions", "_products", "generation")

    def __init__(self, bands: PriceBands | None = None, max_versions: int = 8) -> None:
        self._bands = bands or PriceBands()
        self._max_versions = max_versions
        # sku -> (sorted list of ts, parallel list of attrs)
        self._products: dict[str, tuple[list[int], list[ProductAttrs]]] = {}
        #: bumped by every upsert: caches of lookups are valid while it stays the same
        self.generation = 0

    def __len__(self) -> int:
        return len(self._products)

    def __contains__(self, sku: object) -> bool:
        return sku in self._products

    def upsert(
        self,
        *,
        sku: str,
        ts: int,
        category: str,
        color: str,
        size: str,
        list_price: float,
        factory_id: str,
        lead_time_days: int,
        moq: int,
    ) -> None:
        """Add a version of ``sku`` valid from ``ts``; the same ts replaces that version."""
        self.generation += 1
        attrs = ProductAttrs(
            category=category,
            color=color,
            size=size,
            price_band=self._bands.label(list_price),
            factory_id=factory_id,
            list_price=list_price,
            lead_time_days=lead_time_days,
            moq=moq,
        )
        entry = self._products.get(sku)
        if entry is None:
            self._products[sku] = ([ts], [attrs])
            return
        times, versions = entry
        i = bisect_right(times, ts)
        if i and times[i - 1] == ts:
            versions[i - 1] = attrs
            return
        insort(times, ts)
        versions.insert(i, attrs)
        if len(times) > self._max_versions:
            del times[0]
            del versions[0]

    def delete(self, sku: str) -> bool:
        """Forget every version of ``sku`` (a tombstone on the compacted catalog topic: what
        compaction does). Demand of the SKU read afterwards counts under ``unknown``."""
        if self._products.pop(sku, None) is None:
            return False
        self.generation += 1
        return True

    def lookup(self, sku: str, ts: int) -> ProductAttrs | None:
        """Attributes of ``sku`` valid at ``ts``, or None for a SKU the catalog lacks."""
        entry = self._products.get(sku)
        if entry is None:
            return None
        times, versions = entry
        return versions[max(bisect_right(times, ts) - 1, 0)]

    def lookup_span(self, sku: str, first: int, last: int) -> ProductAttrs | bool | None:
        """``lookup(sku, first)`` if the same version is valid through ``last``, else False
        (a version starts after ``first`` and at or before ``last``)."""
        entry = self._products.get(sku)
        if entry is None:
            return None
        times, versions = entry
        i = max(bisect_right(times, first) - 1, 0)
        if i != max(bisect_right(times, last) - 1, 0):
            return False
        return versions[i]

    def versions(self) -> dict[str, tuple[list[int], list[ProductAttrs]]]:
        """SKU -> (sorted version times, versions): read by the compiled lanes
        (``streams/core/_lanes.c``), which looks up as ``lookup_span``."""
        return self._products

    def latest(self, sku: str) -> ProductAttrs | None:
        entry = self._products.get(sku)
        return entry[1][-1] if entry else None

    def skus(self) -> list[str]:
        return list(self._products)
