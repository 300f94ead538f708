"""Types of the engine's compiled lanes (streams/core/_lanes.c)."""

from collections.abc import Iterable, Sequence
from typing import Any, Final

DONE: Final[int]
SLOW: Final[int]
APPLY: Final[int]

# (stop, status, max_ts, consumed, processed, duplicates, corrected, unknown_sku, new_cells)
_RunResult = tuple[int, int, int | None, int, int, int, int, int, int]

def pageview_run(
    run: Sequence[Any], start: int, state: tuple[Any, ...], limits: tuple[int | None, ...], /
) -> _RunResult: ...
def logistics_run(
    run: Sequence[Any], start: int, state: tuple[Any, ...], limits: tuple[int | None, ...], /
) -> _RunResult: ...
def order_run(
    run: Sequence[Any], start: int, state: tuple[Any, ...], limits: tuple[int | None, ...], /
) -> _RunResult: ...
def hot_entry(
    state: tuple[Any, ...], hk: tuple[str, str, str, str, str, int], ts_s: int, /
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
