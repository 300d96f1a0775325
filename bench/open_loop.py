"""Load at a fixed arrival rate for the bench's phases (bench/e2e.py, bench/overload.py): each
request leaves on its schedule whether or not earlier ones were answered (open loop), as real
customers arrive, so a slow fleet meets more requests in progress rather than fewer arrivals."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import httptools

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


class _Connection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection carrying one request at a time; httptools (uvicorn's
    C parser) reads the answers."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.answer: asyncio.Future[tuple[int, bytes]] | None = None
        self.body: list[bytes] = []
        self.reusable = True

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(ConnectionError(f"not an HTTP answer: {exc}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.reusable = False
        self._fail(ConnectionError("the server closed the connection"))

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        self.reusable = self.reusable and self.parser.should_keep_alive()
        if self.answer is not None and not self.answer.done():
            self.answer.set_result((self.parser.get_status_code(), b"".join(self.body)))

    def _fail(self, exc: Exception) -> None:
        self.reusable = False
        if self.answer is not None and not self.answer.done():
            self.answer.set_exception(exc)

    async def exchange(self, request: bytes) -> tuple[int, bytes]:
        assert self.transport is not None
        self.body = []
        self.answer = asyncio.get_running_loop().create_future()
        self.transport.write(request)
        return await self.answer


class KeepAliveClient:
    """A lean HTTP/1.1 client for the bench's fixed-rate drivers: requests prepared once as
    bytes, sent on kept-alive connections (at most `max_connections`; one more request waits
    for a free one). httpx was the driver first: it spent about 5 ms of CPU a request at
    300/s against a stand-in answering at once, and fell tens of seconds behind at 700/s, so
    the driver measured itself instead of the fleet."""

    def __init__(self, host: str, port: int, max_connections: int, timeout_seconds: float):
        self.host = host
        self.port = port
        self.timeout_seconds = timeout_seconds
        self._idle: list[_Connection] = []
        self._free = asyncio.Semaphore(max_connections)

    def post(self, path: str, body: bytes, headers: dict[str, str]) -> bytes:
        """A POST request, as the bytes `send` takes."""
        lines = [f"POST {path} HTTP/1.1", f"host: {self.host}:{self.port}"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        lines.append(f"content-length: {len(body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body

    async def send(self, request: bytes) -> tuple[int, bytes]:
        """The status and body of the answer to `request`; ConnectionError or TimeoutError
        when there is none (within the timeout)."""
        async with self._free:
            connection: _Connection | None = None
            try:
                async with asyncio.timeout(self.timeout_seconds):
                    connection = self._idle.pop() if self._idle else await self._connect()
                    return await connection.exchange(request)
            except BaseException:
                if connection is not None:
                    connection.reusable = False
                raise
            finally:
                if connection is not None:
                    self._release(connection)

    def _release(self, connection: _Connection) -> None:
        if connection.reusable:
            self._idle.append(connection)
        elif connection.transport is not None:
            connection.transport.close()

    async def _connect(self) -> _Connection:
        _, connection = await asyncio.get_running_loop().create_connection(
            _Connection, self.host, self.port
        )
        return connection

    def close(self) -> None:
        """Close the idle connections."""
        for connection in self._idle:
            if connection.transport is not None:
                connection.transport.close()
        self._idle.clear()
