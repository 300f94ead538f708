"""Price bands: a product attribute derived from the catalog ``list_price``."""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence
from itertools import pairwise

DEFAULT_EDGES: tuple[float, ...] = (0, 10, 20, 50, 100, 200, 500)


def _fmt(edge: float) -> str:
    return str(int(edge)) if float(edge).is_integer() else f"{edge:g}"


class PriceBands:
    """Maps a price to a label such as ``10-20`` (lower edge inclusive) or ``500+``.

    Edges must be strictly increasing and start at 0. A price below the first edge
    cannot occur (prices are validated >= 0).
    """

    __slots__ = ("edges", "labels")

    def __init__(self, edges: Sequence[float] = DEFAULT_EDGES) -> None:
        if not edges or edges[0] != 0:
            raise ValueError("price band edges must start at 0")
        if any(b <= a for a, b in pairwise(edges)):
            raise ValueError("price band edges must be strictly increasing")
        self.edges = tuple(float(e) for e in edges)
        self.labels = tuple(
            [f"{_fmt(a)}-{_fmt(b)}" for a, b in pairwise(edges)]
            + [f"{_fmt(edges[-1])}+"]
        )

    def label(self, price: float) -> str:
        """Label of the band holding ``price``."""
        return self.labels[max(bisect_right(self.edges, price) - 1, 0)]
