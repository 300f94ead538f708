"""Demand counters per (window, attribute cell) for one source partition.

A *cell* is (category, color, size, price_band, region). Every source partition
(topic, partition) keeps its own counters; the final number for a cell is the sum over
partitions (done by the ``c2m.demand_by_attribute`` view). Per-partition state depends
only on that partition's log, so it is the same on every replay, whatever the batching.

Measures are integers: GMV is kept in 1/10000 CNY (``gmv_e4``) so that sums are exact
and independent of the order of addition.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Container, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from streams.core import _lanes
from streams.core.calendar import UTC_CALENDAR, MarketCalendar
from streams.core.dedup import Cut, Deduplicator
from streams.core.inventory import CounterStore, SkuHours, add_int64
from streams.core.windows import Watermark

if TYPE_CHECKING:
    from streams.core._lanes import CellHashes as CompiledCellHashes
    from streams.core._lanes import Cells as CompiledCells
    from streams.core._lanes import IdSet
    from streams.core._lanes import SkuHours as CompiledSkuHours

#: Most hashes in one visitor or dedup row of a flush (bounds the size of a row, and of a
#: message on ``c2m.sink``).
ARRAY_CHUNK: Final = 4096

# Slots in the per-cell measure vector.
ORDERS: Final = 0
UNITS: Final = 1
GMV_E4: Final = 2
CANCELLED_UNITS: Final = 3
RETURNED_UNITS: Final = 4
PAGEVIEWS: Final = 5
MEASURES: Final = ("orders", "units", "gmv_e4", "cancelled_units", "returned_units", "pageviews")

#: (window_seconds, window_start_s, category, color, size, price_band, region)
CellKey = tuple[int, int, str, str, str, str, str]
#: (category, color, size, price band, region, time grain): the key of the hot cache
HotKey = tuple[str, str, str, str, str, int]
#: The hot-path cache entries, by name: ``HotEntry`` of one (category, color, size, price
#: band, region, time grain) in ``PartitionState.hot`` (the measure vector of the cell of
#: every window size, and the handles (``CellHashes``) of the cells of the base sizes in
#: the visitor hashes and in the shop tags); ``PageViewEntry`` of one (sku, region, time
#: grain) in ``PartitionState.hot_pv`` (the catalog generation it was built at, whether the
#: SKU is unknown, the handle of the SKU's hour, ``SkuHours.handle``, and the HotEntry's
#: fields). Struct sequences of the compiled core, which reads them too: one definition.
HotEntry = _lanes.HotEntry
PageViewEntry = _lanes.PageViewEntry


def price_e4(price: float) -> int:
    """A CNY price in 1/10000 CNY, rounded half to even (deterministic)."""
    return round(price * 10_000)


@dataclass(slots=True)
class Ledger:
    """Where every consumed message of a partition went."""

    consumed: int = 0
    processed: int = 0
    dead_lettered: int = 0
    duplicates: int = 0
    late: int = 0
    corrected: int = 0  # behind the watermark but within the horizon: applied
    unknown_sku_lines: int = 0


def visitor_rows_of(
    cut: list[tuple[CellKey, list[int]]],
    windows: Callable[[int, int], list[tuple[int, int]]],
) -> list[tuple[object, ...]]:
    """(*cell key, [visitor hashes], windows) rows for a cut of ``CellHashes`` (cells
    with their hashes ascending), at most ``ARRAY_CHUNK`` hashes a row.
    ``windows(size, start)`` lists the (size, start) of every window the base cell's
    visitors also count in (ClickHouse expands the row to each)."""
    rows: list[tuple[object, ...]] = [
        (*key, hashes, windows(key[0], key[1]))
        for key, hashes in cut
        if len(hashes) <= ARRAY_CHUNK
    ]
    for key, hashes in cut:
        if len(hashes) > ARRAY_CHUNK:
            expand = windows(key[0], key[1])
            rows += [
                (*key, hashes[i : i + ARRAY_CHUNK], expand)
                for i in range(0, len(hashes), ARRAY_CHUNK)
            ]
    return rows


def _hash_arg(h: object) -> None:
    if not isinstance(h, int):
        raise TypeError("CellHashes: a hash is an int")
    if not 0 <= h < 1 << 64:
        raise OverflowError("CellHashes: a hash is in [0, 2**64)")


class CellHashes:
    """Per cell, the 64-bit hashes seen there since the last cut (a partition's visitor
    hashes, or its shops' contributor tags): the pure-Python reference of the compiled
    core's ``_lanes.CellHashes`` (the same methods and results; a native engine uses that
    one, ``tests/unit/test_compiled_lanes.py`` compares the two). ``handle`` names a
    cell for ``add`` (the hot entries keep it): here the key itself, in the compiled core
    the cell's index; valid until the next cut, which takes everything."""

    __slots__ = ("_sets",)

    def __init__(self) -> None:
        self._sets: dict[CellKey, set[int]] = {}

    def __len__(self) -> int:
        return len(self._sets)

    @property
    def pending(self) -> int:
        """(cell, hash) pairs since the last cut."""
        return sum(len(v) for v in self._sets.values())

    def handle(self, key: CellKey) -> Any:
        """The cell's handle (made, with no hashes, if new)."""
        if not isinstance(key, tuple):
            raise TypeError("CellHashes: a cell key is a tuple")
        if key not in self._sets:
            self._sets[key] = set()
        return key

    def add(self, handle: Any, h: int) -> None:
        """The hash ``h`` (an int in [0, 2**64)) seen in the handle's cell."""
        _hash_arg(h)
        if not isinstance(handle, tuple):
            raise TypeError("CellHashes: a handle is a cell key here")
        got = self._sets.get(handle)
        if got is None:
            raise KeyError("CellHashes: not a live handle (cut since?)")
        got.add(h)

    def key_of(self, handle: Any) -> CellKey:
        if handle not in self._sets:
            raise KeyError("CellHashes: not a live handle (cut since?)")
        return handle  # type: ignore[no-any-return]

    def cut(self) -> list[tuple[CellKey, list[int]]]:
        """Take everything since the last cut: (key, hashes ascending) of the cells that
        hold any, in the order the cells were made."""
        out = [(k, sorted(v)) for k, v in self._sets.items() if v]
        self._sets = {}
        return out

    def uncut(self, items: Iterable[tuple[CellKey, list[int]]]) -> None:
        """The write of a cut failed: its hashes are pending again (merged)."""
        for key, hashes in items:
            for x in hashes:
                _hash_arg(x)
            h = self.handle(key)
            for x in hashes:
                self.add(h, x)

    def snapshot(self) -> dict[CellKey, set[int]]:
        return {k: set(v) for k, v in self._sets.items()}


def _cell_key_arg(key: object) -> None:
    if not (type(key) is tuple and len(key) == 7 and type(key[0]) is int
            and type(key[1]) is int and all(type(x) is str for x in key[2:])):
        raise TypeError("Cells: a key is (window_seconds, window_start_s, category, color, "
                        "size, price_band, region)")


class Cells(CounterStore[CellKey]):
    """The measures of one source partition's cells (``CellKey`` -> a counter per
    ``MEASURES``): the pure-Python reference of the compiled core's ``_lanes.Cells`` (the
    same methods and results; a native engine uses that one,
    ``tests/unit/test_compiled_lanes.py`` compares the two).

    A cell changed since the last cut is *marked*; ``cut`` takes the marks (a flush) and
    ``uncut`` gives them back (its write failed). ``handle`` names a cell for ``add`` (the
    hot entries keep it): here the key itself, in the compiled core the entry's index with
    the cut count (refused once a cut has been made). ``evict`` drops the clean cells whose
    windows ended at or before its bound, one for windows shorter than an hour and one for
    the others (kept longer for the live rolling sums); a marked cell is kept. A cell's
    window end is given when it is made (``handle``), and computed by ``end_of``
    (``MarketCalendar.end_of``) when it is restored (``load``)."""

    __slots__ = ("_ends", "end_of")

    def __init__(self, *, end_of: Callable[[int, int], int]) -> None:
        super().__init__()
        self.end_of = end_of
        #: (window end s, window >= 1 h) -> the cells ending then, so eviction is
        #: O(evicted)
        self._ends: dict[tuple[int, bool], list[CellKey]] = {}

    def _key_arg(self, key: object) -> None:
        _cell_key_arg(key)

    def _make(self, key: CellKey, end_s: int) -> None:
        self._v[key] = [0, 0, 0, 0, 0, 0]
        ek = (end_s, key[0] >= 3600)
        keys = self._ends.get(ek)
        if keys is None:
            self._ends[ek] = [key]
        else:
            keys.append(key)

    def handle(self, key: CellKey, end_s: int) -> Any:
        """The cell's handle: made (zeros, its window ending at ``end_s``) if new, and
        marked."""
        _cell_key_arg(key)
        if key not in self._v:
            if type(end_s) is not int:
                raise TypeError("an int expected")
            self._make(key, end_s)
        self._marked[key] = None
        return key

    def add(self, handle: Any, slot: int, n: int) -> None:
        """Measure ``slot`` of the handle's cell += ``n``."""
        if not 0 <= slot < len(MEASURES):
            raise ValueError("add: slot is not a measure")
        vec = self._v.get(handle)
        if vec is None:
            raise KeyError("Cells: not a live handle (cut since?)")
        add_int64(vec, slot, n, "Cells")

    def get(self, key: CellKey) -> list[int] | None:
        _cell_key_arg(key)
        vec = self._v.get(key)
        return None if vec is None else list(vec)

    def key_of(self, handle: Any) -> CellKey:
        if handle not in self._v:
            raise KeyError("Cells: not a live handle (cut since?)")
        return handle  # type: ignore[no-any-return]

    def load(self, pairs: Iterable[tuple[CellKey, Sequence[int]]]) -> None:
        """Restore persisted (key, measures) pairs (not marked)."""
        for key, vec in pairs:
            counters = self._counters(vec, len(MEASURES), "load: six counters expected")
            _cell_key_arg(key)
            if key not in self._v:
                end = self.end_of(key[0], key[1])
                if not isinstance(end, int):
                    raise TypeError("an int expected")
                self._make(key, end)
            self._v[key] = counters

    def evict(self, short_s: int, long_s: int) -> int:
        """Drop the clean cells whose windows ended at or before ``short_s`` (windows
        shorter than an hour) or ``long_s`` (the others)."""
        marked, v, ends = self._marked, self._v, self._ends
        evicted = 0
        for ek in [e for e in ends if e[0] <= (long_s if e[1] else short_s)]:
            keep = []
            for k in ends.pop(ek):
                if k in marked:
                    keep.append(k)
                elif v.pop(k, None) is not None:
                    evicted += 1
            if keep:
                ends[ek] = keep
        return evicted



@dataclass(slots=True)
class Detached:
    """What a flush cut took from one partition: its position then and the pending marks."""

    state: PartitionState
    position: int
    dirty: list[CellKey]
    visitors: list[tuple[CellKey, list[int]]]
    sku_dirty: list[tuple[str, int]]
    dedup: Cut
    shops: list[tuple[CellKey, list[int]]] = field(default_factory=list)


@dataclass(slots=True)
class PartitionState:
    """Everything the engine knows about one source partition."""

    topic: str
    partition: int
    watermark: Watermark
    dedup: Deduplicator | IdSet  # (the compiled one when the engine's lanes are on)
    position: int | None = None  # next offset to process
    #: the cells' measures, and which changed since the last cut (the compiled one when
    #: the engine's lanes are on)
    cells: Cells | CompiledCells = field(
        default_factory=lambda: Cells(end_of=UTC_CALENDAR.end_of))
    ledger: Ledger = field(default_factory=Ledger)
    flushed_position: int | None = None
    #: (dims, time grain) -> HotEntry, for the cells changed since the last cut. Every
    #: cell in it is marked (``hot_entry`` marked it); it is cleared with the cut, so it
    #: never holds a handle that a cut has ended or a cell eviction could let go of.
    hot: dict[HotKey, HotEntry] = field(default_factory=dict)
    #: cell -> visitor hashes seen there since the last flush, for the cells of the base
    #: window sizes; unique visitors are counted in ClickHouse (uniqExact over the rows,
    #: expanded to the other sizes there), which merges partitions exactly.
    visitors: CellHashes | CompiledCellHashes = field(default_factory=CellHashes)
    #: cell -> contributor tags of the shops whose events it counted since the last flush
    #: (streams.core.kanon.shop_tag), for the cells of the base window sizes, like visitors
    shops: CellHashes | CompiledCellHashes = field(default_factory=CellHashes)
    #: per-SKU hourly counters (inventory and the production brief); the compiled one
    #: when the engine's lanes are on
    skus: SkuHours | CompiledSkuHours = field(default_factory=SkuHours)
    #: page-view lane: (sku, region, time grain) -> PageViewEntry; same life as ``hot``
    hot_pv: dict[tuple[str, str, int], PageViewEntry] = field(default_factory=dict)
    #: where windows end (a local day may last 23 or 25 hours)
    calendar: MarketCalendar = UTC_CALENDAR
    #: (Kafka timestamp, fingerprint) of the last record consumed (at ``position - 1``)
    last_record: tuple[int, int] = (-1, 0)

    def needs_flush(self) -> bool:
        return (self.cells.pending > 0 or self.skus.pending > 0
                or self.position != self.flushed_position)

    def hot_entry(
        self,
        hk: HotKey,
        bounds: tuple[int, ...],
        sizes: Iterable[int],
        visitor_sizes: Container[int],
    ) -> HotEntry:
        """Cache under ``hk`` = (category, color, size, price band, region, grain) the
        handles (marked) of its cells of every window size in ``sizes``, whose
        windows are ``bounds`` (``MarketCalendar.grain`` of the grain: the SKU hour, then
        start and end per size), and the visitor and shop handles of those whose size is in
        ``visitor_sizes`` (the base sizes: ClickHouse derives the visitor and shop rows of
        the other sizes, see migrations 0005 and 0010): their handles in ``visitors`` and
        ``shops``."""
        cells, visitors, shops = self.cells, self.visitors, self.shops
        cat, color, size, band, region, _ = hk
        handles = []
        sets = []
        shop_sets = []
        for i, s in enumerate(sizes):
            k = (s, bounds[1 + 2 * i], cat, color, size, band, region)
            handles.append(cells.handle(k, bounds[2 + 2 * i]))
            if s in visitor_sizes:
                sets.append(visitors.handle(k))
                shop_sets.append(shops.handle(k))
        entry = self.hot[hk] = HotEntry((tuple(handles), tuple(sets), tuple(shop_sets)))
        return entry

    def pending_visitors(self) -> int:
        """(cell, visitor) pairs seen since the last flush."""
        return self.visitors.pending

    def detach(self) -> Detached:
        """Take the marks of everything changed since the last cut (a flush is cut).

        Processing can go on while the cut is written: new changes get new marks (and new
        hot-cache entries, since every cached cell must be marked). ``reattach`` gives the
        marks back if the write fails, so nothing is lost.
        """
        assert self.position is not None  # noqa: S101 - only partitions with a position
        dedup = self.dedup.cut()
        dirty: list[CellKey] = []
        sku_hours: list[tuple[str, int]] = []
        visitors: list[tuple[CellKey, list[int]]] = []
        try:
            dirty = self.cells.cut()
            sku_hours = self.skus.cut()
            visitors = self.visitors.cut()
            shops = self.shops.cut()
        except BaseException:  # give back what was taken: nothing pending is lost
            self.hot.clear()  # (their handles ended with a cut)
            self.hot_pv.clear()
            # each on its own: when one fails the others are still given back
            with contextlib.suppress(Exception):
                self.dedup.uncut(dedup)
            with contextlib.suppress(Exception):
                self.cells.uncut(dirty)
            with contextlib.suppress(Exception):
                self.skus.uncut(sku_hours)
            with contextlib.suppress(Exception):
                self.visitors.uncut(visitors)
            raise
        cut = Detached(self, self.position, dirty, visitors, sku_hours, dedup, shops)
        self.hot.clear()
        self.hot_pv.clear()
        return cut

    def reattach(self, cut: Detached) -> None:
        """The write of ``cut`` failed: its marks are pending again (merged with newer ones;
        each store on its own, so one that fails leaves the others given back, and the
        first error is raised)."""
        first: BaseException | None = None
        give_backs: list[tuple[Any, Any]] = [
            (self.cells, cut.dirty),
            (self.visitors, cut.visitors),  # (merged by key: hot entries' handles stay good)
            (self.shops, cut.shops),
            (self.skus, cut.sku_dirty),
            (self.dedup, cut.dedup),
        ]
        for store, taken in give_backs:
            try:
                store.uncut(taken)
            except Exception as e:  # (the others are still given back; then raised)
                first = first or e
        if first is not None:
            raise first

    def evict(self, horizon_ms: int, live_retention_ms: int = 0) -> int:
        """Drop clean windows that no accepted event can touch any more.

        Windows of an hour or longer are kept for ``live_retention_ms`` too (if longer),
        so the live rolling sums (up to 7 days) can be read from memory.
        """
        wm = self.watermark.value
        if wm is None:
            return 0
        short_s = (wm - horizon_ms) // 1000
        long_s = (wm - max(horizon_ms, live_retention_ms)) // 1000
        return self.cells.evict(short_s, long_s) + self.skus.evict(short_s)
