"""Load at a fixed arrival rate for the bench's phases (bench/e2e.py, bench/overload.py): each
request leaves on its schedule whether or not earlier ones were answered (open loop), as real
customers arrive, so a slow fleet meets more requests in progress rather than fewer arrivals."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

PERCENT = 100


def percentile(values: list[float], pct: float) -> float:
    """The nearest-rank percentile `pct` of `values` (not empty)."""
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(pct / PERCENT * len(ordered)) - 1))
    return ordered[index]


@dataclass(frozen=True, slots=True)
class Sent:
    """How the schedule went: seconds from the first start to the last, and how far behind its
    time the latest start was (the driver itself falling behind)."""

    seconds: float
    most_behind_seconds: float


async def at_fixed_rate(rate: float, count: int, start: Callable[[int], Awaitable[None]]) -> Sent:
    """Start `start(i)` for each i below `count` at i / `rate` seconds from now, then wait for
    every one to finish."""
    t0 = time.monotonic()
    behind = 0.0
    tasks = []
    for i in range(count):
        delay = t0 + i / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        else:
            behind = max(behind, -delay)
        tasks.append(asyncio.ensure_future(start(i)))
    sent = Sent(seconds=time.monotonic() - t0, most_behind_seconds=behind)
    await asyncio.gather(*tasks)
    return sent
