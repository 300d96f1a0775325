"""The services' uvicorn server: uvicorn's own, waking once a second while idle instead of ten
times, and at once when told to stop.

uvicorn's `Server.main_loop` sleeps 0.1 s between looks at its own state (should it stop? the
Date header of the next second); an idle process thus woke ten times a second for nothing: 0.26%
of a core per process, most of what an idle service spends (issue 16 item 7). Here a stop wakes
the loop itself (a signal handler, or an owner setting `should_exit` from another thread), so
the look can wait a second. Only uvicorn is imported: the SMTP sink of devstack uses it too.
"""

from __future__ import annotations

import asyncio
import contextlib

import uvicorn

# How often the server looks at its own state while serving; the Date header keeps its
# one-second steps.
TICK_SECONDS = 1.0
# on_tick's counter counts tenths of a second (it refreshes the Date header at multiples of 10).
_TENTHS_PER_TICK = round(TICK_SECONDS * 10)


class FleetServer(uvicorn.Server):
    """uvicorn's server waking once a second instead of ten times, and at once when told to
    stop (a signal, or `should_exit` set by its owner): an idle process sleeps."""

    def __init__(self, config: uvicorn.Config) -> None:
        self._stop_requested: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._should_exit = False
        super().__init__(config)

    @property
    def should_exit(self) -> bool:
        return self._should_exit

    @should_exit.setter
    def should_exit(self, value: bool) -> None:
        self._should_exit = value
        loop, stop_requested = self._loop, self._stop_requested
        if value and loop is not None and stop_requested is not None and not loop.is_closed():
            # From a signal handler or another thread: wake the loop where it waits.
            loop.call_soon_threadsafe(stop_requested.set)

    async def main_loop(self) -> None:
        # The event first: a stop asked before the loop is known is seen by the first tick.
        self._stop_requested = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        counter = 0
        should_exit = await self.on_tick(counter)
        while not should_exit:
            counter = (counter + _TENTHS_PER_TICK) % 864000
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop_requested.wait(), TICK_SECONDS)
            should_exit = await self.on_tick(counter)
