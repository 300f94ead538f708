"""Text for terminals: display width of CJK text and tables aligned by it."""

from __future__ import annotations

import unicodedata
from collections.abc import Collection, Sequence


def display_width(text: str) -> int:
    """Terminal columns of ``text``: wide and fullwidth East Asian characters take two,
    combining marks none."""
    width = 0
    for ch in text:
        if unicodedata.combining(ch):
            continue
        width += 2 if unicodedata.east_asian_width(ch) in "WF" else 1
    return width


def pad(text: str, width: int, right: bool = False) -> str:
    """``text`` filled with spaces to ``width`` display columns (on the left if ``right``)."""
    fill = " " * max(width - display_width(text), 0)
    return fill + text if right else text + fill


def table(
    headers: Sequence[str], rows: Sequence[Sequence[str]], right: Collection[int] = (),
    gap: str = "  ",
) -> list[str]:
    """Lines of a table whose columns line up in a terminal whatever the script: each
    column as wide as its widest cell (display width); ``right``: right-aligned columns."""
    widths = [max([display_width(h), *(display_width(r[i]) for r in rows)])
              for i, h in enumerate(headers)]
    out = []
    for cells in (headers, *rows):
        out.append(gap.join(pad(c, w, i in right) for i, (c, w) in
                            enumerate(zip(cells, widths, strict=True))).rstrip())
    return out
