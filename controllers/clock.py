"""The current second, formatted once: every write stamps a time and every HTTP answer
carries a Date header, thousands a second, while the text changes once a second."""

from __future__ import annotations

import time
from collections.abc import Callable


class PerSecond:
    """`fmt(second)` for the current Unix second, computed when the second changes."""

    def __init__(self, fmt: Callable[[int], str]) -> None:
        self._fmt = fmt
        self._last: tuple[int, str] = (-1, "")

    def __call__(self) -> str:
        second = int(time.time())
        last = self._last
        if last[0] != second:
            last = self._last = (second, self._fmt(second))  # one tuple: threads see both or neither
        return last[1]


# the current time to the second, as objects carry it (creationTimestamp, conditions)
now_rfc3339 = PerSecond(lambda second: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(second)))
