"""Types of the engine's compiled lanes (streams/core/_lanes.c)."""

from collections.abc import Callable, Iterable, Sequence
from typing import Any, Final

DONE: Final[int]
SLOW: Final[int]
APPLY: Final[int]

# the slots of a cell's and a SKU hour's vector (streams.core.demand, .inventory)
ORDERS: Final[int]
UNITS: Final[int]
GMV_E4: Final[int]
CANCELLED_UNITS: Final[int]
RETURNED_UNITS: Final[int]
PAGEVIEWS: Final[int]
SKU_ORDERS: Final[int]
SKU_UNITS: Final[int]
SKU_CANCELLED: Final[int]
SKU_RETURNED: Final[int]
SKU_PAGEVIEWS: Final[int]
SKU_SHIPPED: Final[int]
SKU_RECEIVED: Final[int]
SKU_COUNT_TS: Final[int]
SKU_COUNT_ON_HAND: Final[int]

class RunResult(tuple[Any, ...]):
    """What a lane of the Core returns, read by name."""

    @property
    def stop(self) -> int: ...
    @property
    def status(self) -> int: ...
    @property
    def max_ts(self) -> int | None: ...
    @property
    def consumed(self) -> int: ...
    @property
    def processed(self) -> int: ...
    @property
    def duplicates(self) -> int: ...
    @property
    def corrected(self) -> int: ...
    @property
    def unknown_sku(self) -> int: ...
    @property
    def new_cells(self) -> int: ...

_RunResult = RunResult

class IdSet:
    """A partition's dedup state, compiled (the methods of its reference,
    ``streams.core.dedup.Deduplicator``)."""

    horizon_ms: int
    bucket_ms: int
    def __init__(self, *, horizon_ms: int, bucket_ms: int) -> None: ...
    def __len__(self) -> int: ...
    @property
    def pending(self) -> int: ...
    def first_time(self, event_id: str, ts_ms: int) -> bool: ...
    def cut(self) -> tuple[list[tuple[int, list[int]]], dict[int, int]]: ...
    def uncut(self, taken: tuple[list[tuple[int, list[int]]], dict[int, int]]) -> None: ...
    def load(self, pairs: Iterable[tuple[int, int]]) -> None: ...
    def expire(self, watermark_ms: int) -> int: ...
    def snapshot(self) -> dict[int, tuple[list[int], int]]: ...

class Versions:
    """The catalog's versions by SKU, compiled (the methods of its
    reference, ``streams.core.catalog.CatalogVersions``)."""

    max_versions: int
    def __init__(self, *, max_versions: int) -> None: ...
    @property
    def generation(self) -> int: ...
    def __len__(self) -> int: ...
    def __contains__(self, sku: object) -> bool: ...
    def put(self, sku: str, ts: int, attrs: Any) -> None: ...
    def delete(self, sku: str) -> bool: ...
    def lookup(self, sku: str, ts: int) -> Any: ...
    def lookup_span(self, sku: str, first: int, last: int) -> Any: ...
    def latest(self, sku: str) -> Any: ...
    def skus(self) -> list[str]: ...
    def versions_of(self, sku: str) -> list[tuple[int, Any]]: ...

class LaneState:
    """The partition's containers a call of the core works on (types checked at
    construction)."""

    dedup: IdSet
    hot_pv: dict[Any, Any]
    hot: dict[Any, Any]
    cells: dict[Any, list[int]]
    dirty: set[Any]
    ends: dict[Any, Any]
    visitors: dict[Any, set[int]]
    sku_buckets: dict[Any, list[int]]
    sku_dirty: set[Any]
    catalog: Versions
    generation: int
    shops: dict[Any, set[int]]
    def __init__(
        self, *, dedup: IdSet, hot_pv: dict[Any, Any],
        hot: dict[Any, Any], cells: dict[Any, list[int]], dirty: set[Any],
        ends: dict[Any, Any], visitors: dict[Any, set[int]],
        sku_buckets: dict[Any, list[int]], sku_dirty: set[Any], catalog: Versions,
        generation: int, shops: dict[Any, set[int]],
    ) -> None: ...

class Limits:
    """The engine's limits a lane applies."""

    grain_s: int
    lateness_ms: int
    horizon_ms: int
    max_future_ms: int
    max_past_ms: int
    max_bytes: int
    def __init__(
        self, *, grain_s: int, lateness_ms: int, horizon_ms: int,
        max_future_ms: int, max_past_ms: int, max_bytes: int,
    ) -> None: ...

class Core:
    """The engine's compiled core: its settings (fixed at construction) and the lanes'
    caches; the lanes and ``hot_entry`` work on a partition's ``LaneState``."""

    sizes: tuple[int, ...]
    visitor_sizes: tuple[bool, ...]
    grains: dict[int, Any]
    grain_fn: Callable[[int], Any]
    unknown: object
    limits: Limits
    def __init__(
        self, *, sizes: tuple[int, ...], visitor_sizes: tuple[bool, ...],
        grains: dict[int, Any], grain_fn: Callable[[int], Any], unknown: object,
        limits: Limits,
    ) -> None: ...
    def pageview_run(
        self, state: LaneState, run: Sequence[Any], start: int, max_ts: int | None, /
    ) -> _RunResult: ...
    def logistics_run(
        self, state: LaneState, run: Sequence[Any], start: int, max_ts: int | None, /
    ) -> _RunResult: ...
    def order_run(
        self, state: LaneState, run: Sequence[Any], start: int, max_ts: int | None, /
    ) -> _RunResult: ...
    def hot_entry(
        self, state: LaneState, hk: tuple[str, str, str, str, str, int], /
    ) -> tuple[
        tuple[tuple[list[int], ...], tuple[set[int], ...], tuple[set[int], ...]], int
    ]: ...

def flush_rows(
    topic: str, partition: int, keys: Iterable[tuple[Any, ...]],
    table: dict[Any, list[int]], version: int, /
) -> list[tuple[Any, ...]]: ...
def decode_pageview(raw: bytes, /) -> tuple[str, int, str, str, str] | None: ...
def decode_logistics(raw: bytes, /) -> tuple[str, int, str] | None: ...
def decode_order(
    raw: bytes, /
) -> tuple[str, int, str, str, list[tuple[str, int, float, int]]] | None: ...
def event_time(text: bytes, /) -> int | None: ...
def id_hash(data: bytes, /) -> int: ...
