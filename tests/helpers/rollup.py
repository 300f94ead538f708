"""Test helper: live roll-ups and rolling sums over the engine's cells (pure, no I/O).

Cells are additive across source partitions and across any subset of dimensions, so a
roll-up is a plain sum: no double counting as long as every event lands in exactly one
cell per window size (it does). Unique visitors are not additive; they are counted in
ClickHouse (see docs/ARCHITECTURE.md, "Rolling demand and roll-ups").
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from streams.core.demand import MEASURES, CellKey, PartitionState

DIMENSIONS = ("category", "color", "size", "price_band", "region")
_DIM_INDEX = {name: 2 + i for i, name in enumerate(DIMENSIONS)}

#: (window_seconds, window_start_s, *chosen dimension values)
RollupKey = tuple[int | str, ...]


def _accumulate(out: dict[Any, list[int]], key: Any, vec: Sequence[int]) -> None:
    acc = out.get(key)
    if acc is None:
        out[key] = list(vec)
    else:
        for i, v in enumerate(vec):
            acc[i] += v


def merge_partitions(
    states: Iterable[PartitionState], window_seconds: int | None = None
) -> dict[CellKey, list[int]]:
    """Sum the cells of several source partitions (optionally one window size)."""
    out: dict[CellKey, list[int]] = {}
    for st in states:
        for key, vec in st.cells.snapshot().items():
            if window_seconds is None or key[0] == window_seconds:
                _accumulate(out, key, vec)
    return out


def rollup(
    cells: Mapping[CellKey, Sequence[int]], dims: Sequence[str]
) -> dict[RollupKey, list[int]]:
    """Sum cells over every dimension not in ``dims`` (e.g. ``("category", "color")``)."""
    unknown = set(dims) - set(DIMENSIONS)
    if unknown:
        raise ValueError(f"unknown dimensions {sorted(unknown)}; use {DIMENSIONS}")
    idx = [_DIM_INDEX[d] for d in dims]
    out: dict[RollupKey, list[int]] = {}
    for key, vec in cells.items():
        _accumulate(out, (key[0], key[1], *(key[i] for i in idx)), vec)
    return out


def rolling(
    cells: Mapping[CellKey, Sequence[int]], *, window_seconds: int, as_of_s: int, span_s: int
) -> dict[tuple[str, ...], list[int]]:
    """Per cell (without the window), the sum of windows in ``[as_of - span, as_of)``."""
    out: dict[tuple[str, ...], list[int]] = {}
    lo = as_of_s - span_s
    for key, vec in cells.items():
        if key[0] == window_seconds and lo <= key[1] < as_of_s:
            _accumulate(out, key[2:], vec)
    return out


def as_dict(vec: Sequence[int]) -> dict[str, float]:
    """A measure vector as named measures (GMV in CNY)."""
    d: dict[str, float] = dict(zip(MEASURES, vec, strict=True))
    d["gmv"] = d.pop("gmv_e4") / 10_000
    d["net_units"] = d["units"] - d["cancelled_units"] - d["returned_units"]
    return d
