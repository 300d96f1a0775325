"""How many requests a process takes in at once, adapted to how long they take.

A fixed limit is right for one machine only: 64 requests in progress are answered in 0.4 s by a
fleet holding 170 orders a second and in 1 s by one holding 65 (issue 16, measured on two
machines of the same kind). At saturation the rate does not grow with more requests inside, only
their wait does (Little's law), so the limit follows their time instead, as TCP's congestion
window follows loss: while the requests of a window take longer than the target on average, it
shrinks in proportion (at most by half); while they don't and it is in use, it grows by one a
window. It never leaves [floor, ceiling].

A window closes after `target_seconds` with at least `MIN_WINDOW_SAMPLES` answers in it. Only
requests taken in after the last decrease count: the slow answers of requests taken in under the
old limit say nothing about the new one, and would shrink it again and again.
"""

from __future__ import annotations

import time
from collections.abc import Callable

# Fewer answers than this say too little about the time of the next ones.
MIN_WINDOW_SAMPLES = 10
# One decrease takes the limit down by at least this factor and at most by half.
GENTLEST_DECREASE = 0.9
STEEPEST_DECREASE = 0.5


class LatencyLimit:
    """The limit on requests in progress; `admits` before a request, `observe` after it."""

    __slots__ = (
        "_count",
        "_opened",
        "_peak_in_flight",
        "_total_seconds",
        "ceiling",
        "clock",
        "epoch",
        "floor",
        "limit",
        "target_seconds",
    )
    _opened: float
    _count: int
    _total_seconds: float
    _peak_in_flight: int

    def __init__(
        self,
        *,
        ceiling: int,
        floor: int,
        target_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 1 <= floor <= ceiling:
            raise ValueError(f"need 1 <= floor <= ceiling, got floor {floor}, ceiling {ceiling}")
        if target_seconds <= 0:
            raise ValueError(f"target_seconds must be positive, got {target_seconds}")
        self.ceiling = ceiling
        self.floor = floor
        self.target_seconds = target_seconds
        self.clock = clock
        self.limit = float(ceiling)
        # Bumped by every decrease; a request remembers the epoch it was taken in under.
        self.epoch = 0
        self._open_window()

    def admits(self, in_flight: int) -> bool:
        """Whether one more request may start with `in_flight` already in progress."""
        return in_flight < int(self.limit)

    def observe(self, seconds: float, epoch: int, in_flight: int) -> None:
        """A request taken in under `epoch` was answered after `seconds`, with `in_flight`
        requests in progress (itself included)."""
        if epoch != self.epoch:
            return
        self._count += 1
        self._total_seconds += seconds
        self._peak_in_flight = max(self._peak_in_flight, in_flight)
        if self._count < MIN_WINDOW_SAMPLES or self.clock() - self._opened < self.target_seconds:
            return
        mean = self._total_seconds / self._count
        if mean > self.target_seconds:
            factor = max(STEEPEST_DECREASE, min(GENTLEST_DECREASE, self.target_seconds / mean))
            self.limit = max(float(self.floor), self.limit * factor)
            self.epoch += 1
        elif self._peak_in_flight * 2 >= self.limit:
            self.limit = min(float(self.ceiling), self.limit + 1)
        self._open_window()

    def _open_window(self) -> None:
        self._opened = self.clock()
        self._count = 0
        self._total_seconds = 0.0
        self._peak_in_flight = 0
