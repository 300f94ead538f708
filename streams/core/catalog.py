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
from typing import Any

from streams.core import _lanes
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



class CatalogVersions:
    """SKU -> its last ``max_versions`` versions, by event time: the pure-Python reference
    of the compiled ``streams.core._lanes.Versions`` (the same methods and results; the
    engine's compiled lanes look SKUs up in that one)."""

    __slots__ = ("_products", "generation", "max_versions")

    def __init__(self, *, max_versions: int) -> None:
        if not 1 <= max_versions <= 65_536:  # as the compiled one (_lanes.c, MAX_VERSIONS)
            raise ValueError("CatalogVersions: 1 <= max_versions <= 65536 expected, by keyword")
        self.max_versions = max_versions
        # sku -> (sorted list of ts, parallel list of attrs)
        self._products: dict[str, tuple[list[int], list[Any]]] = {}
        #: bumped by every put and delete: caches of lookups are valid while it stays
        self.generation = 0

    def __len__(self) -> int:
        return len(self._products)

    def __contains__(self, sku: object) -> bool:
        return sku in self._products

    def put(self, sku: str, ts: int, attrs: Any) -> None:
        """A version of ``sku`` valid from ``ts``; the same ts replaces that version;
        beyond ``max_versions`` the oldest goes."""
        self.generation += 1
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
        if len(times) > self.max_versions:
            del times[0]
            del versions[0]

    def delete(self, sku: str) -> bool:
        if self._products.pop(sku, None) is None:
            return False
        self.generation += 1
        return True

    def lookup(self, sku: str, ts: int) -> Any:
        entry = self._products.get(sku)
        if entry is None:
            return None
        times, versions = entry
        return versions[max(bisect_right(times, ts) - 1, 0)]

    def lookup_span(self, sku: str, first: int, last: int) -> Any:
        entry = self._products.get(sku)
        if entry is None:
            return None
        times, versions = entry
        i = max(bisect_right(times, first) - 1, 0)
        if i != max(bisect_right(times, last) - 1, 0):
            return False
        return versions[i]

    def latest(self, sku: str) -> Any:
        entry = self._products.get(sku)
        return entry[1][-1] if entry else None

    def skus(self) -> list[str]:
        return list(self._products)

    def versions_of(self, sku: str) -> list[tuple[int, Any]]:
        entry = self._products.get(sku)
        return list(zip(*entry, strict=True)) if entry else []


class Catalog:
    """SKU -> versions of ``ProductAttrs`` by event time, kept in a store of versions:
    the compiled ``streams.core._lanes.Versions`` (what the engine's compiled lanes read)
    or, with ``compiled=False``, its pure-Python reference ``CatalogVersions``."""

    __slots__ = ("_bands", "store")

    def __init__(
        self, bands: PriceBands | None = None, max_versions: int = 8, *, compiled: bool = True,
    ) -> None:
        self._bands = bands or PriceBands()
        self.store: CatalogVersions | _lanes.Versions = (
            _lanes.Versions(max_versions=max_versions) if compiled
            else CatalogVersions(max_versions=max_versions)
        )

    @property
    def generation(self) -> int:
        """Bumped by every upsert and delete: caches of lookups are valid while it stays
        the same."""
        return self.store.generation

    def __len__(self) -> int:
        return len(self.store)

    def __contains__(self, sku: object) -> bool:
        return sku in self.store

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
        self.store.put(sku, ts, ProductAttrs(
            category=category,
            color=color,
            size=size,
            price_band=self._bands.label(list_price),
            factory_id=factory_id,
            list_price=list_price,
            lead_time_days=lead_time_days,
            moq=moq,
        ))

    def delete(self, sku: str) -> bool:
        """Forget every version of ``sku`` (a tombstone on the compacted catalog topic: what
        compaction does). Demand of the SKU read afterwards counts under ``unknown``."""
        return self.store.delete(sku)

    def lookup(self, sku: str, ts: int) -> ProductAttrs | None:
        """Attributes of ``sku`` valid at ``ts``, or None for a SKU the catalog lacks."""
        return self.store.lookup(sku, ts)  # type: ignore[no-any-return]

    def lookup_span(self, sku: str, first: int, last: int) -> ProductAttrs | bool | None:
        """``lookup(sku, first)`` if the same version is valid through ``last``, else False
        (a version starts after ``first`` and at or before ``last``)."""
        return self.store.lookup_span(sku, first, last)  # type: ignore[no-any-return]

    def latest(self, sku: str) -> ProductAttrs | None:
        return self.store.latest(sku)  # type: ignore[no-any-return]

    def skus(self) -> list[str]:
        return self.store.skus()
