"""Types of the compiled page-view lane (streams/core/_pageview_lane.c)."""

from collections.abc import Sequence
from typing import Any, Final

DONE: Final[int]
SLOW: Final[int]
APPLY: Final[int]

def pageview_run(
    run: Sequence[Any], start: int, state: tuple[Any, ...], limits: tuple[int | None, ...], /
) -> tuple[int, int, int | None, int, int, int, int, int, int]: ...
def decode(raw: bytes, /) -> tuple[str, int, str, str, str, str] | None: ...
def event_time(text: bytes, /) -> int | None: ...
def id_hash(data: bytes, /) -> int: ...
