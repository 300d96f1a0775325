"""Load at a fixed arrival rate for the bench's phases (bench/e2e.py, bench/overload.py): each
request leaves on its schedule whether or not earlier ones were answered (open loop), as real
customers arrive, so a slow fleet meets more requests in progress rather than fewer arrivals.
Both phases place orders: `OrderPlacer` sends `placeOrder` on the lean client below and tells
an accepted order from a refusal and an error."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httptools
import orjson

PERCENT = 100
PLACE = """mutation Place($products: [ProductInput!]!) {
  placeOrder(products: $products) { id } }"""
UNAVAILABLE = "SERVICE_UNAVAILABLE"
ACCEPTED, REFUSED, ERROR = "accepted", "refused", "error"
# Connections a placeOrder driver may open: far more than the gateway admits (its requests in
# progress and waiting), so the driver itself never holds a request back.
DRIVER_CONNECTIONS = 400


def percentile(values: list[float], pct: float) -> float:
    """The nearest-rank percentile `pct` of `values` (not empty)."""
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(pct / PERCENT * len(ordered)) - 1))
    return ordered[index]


def spread(values: list[float]) -> dict[str, float]:
    """p50, p99 and max of `values` in ms, rounded; empty when there are none."""
    if not values:
        return {}
    return {
        "p50_ms": round(percentile(values, 50), 1),
        "p99_ms": round(percentile(values, 99), 1),
        "max_ms": round(max(values), 1),
    }


@dataclass(frozen=True, slots=True)
class Sent:
    """How the schedule went: seconds from the first start to the last, and how far behind its
    time the latest start was (the driver itself falling behind)."""

    seconds: float
    most_behind_seconds: float

    def figures(self, count: int) -> dict[str, float | None]:
        """The rate `count` starts were offered at (below the target when the driver itself
        could not keep the schedule) and how far behind it the latest start was."""
        return {
            "offered_rate_per_s": round((count - 1) / self.seconds, 1) if self.seconds else None,
            "driver_max_behind_schedule_ms": round(self.most_behind_seconds * 1000, 1),
        }


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
                    connection = self._take_idle() or await self._connect()
                    return await connection.exchange(request)
            except BaseException:
                if connection is not None:
                    connection.reusable = False
                raise
            finally:
                if connection is not None:
                    self._release(connection)

    def _take_idle(self) -> _Connection | None:
        """The latest idle connection still open. The server closes one idle past its
        keep-alive timeout (uvicorn's 5 s): a request written on it would never be answered."""
        while self._idle:
            connection = self._idle.pop()
            if connection.reusable:
                return connection
            if connection.transport is not None:
                connection.transport.close()
        return None

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


def classify(status: int, content: bytes) -> tuple[str, str]:
    """(ACCEPTED, order id), (REFUSED, "") or (ERROR, what went wrong) for a `placeOrder`
    answer: refused is SERVICE_UNAVAILABLE alone (the gateway's own 503, or a service's
    refusal passed on as the field's error)."""
    try:
        body = orjson.loads(content)
    except orjson.JSONDecodeError:
        return ERROR, f"HTTP {status}, not JSON"
    if not isinstance(body, dict):
        return ERROR, f"HTTP {status}, not a GraphQL answer"
    placed = (body.get("data") or {}).get("placeOrder")
    if isinstance(placed, dict) and isinstance(placed.get("id"), str):
        return ACCEPTED, placed["id"]
    codes = {(error.get("extensions") or {}).get("code") for error in body.get("errors") or [{}]}
    if codes == {UNAVAILABLE}:
        return REFUSED, ""
    return ERROR, f"HTTP {status}, {sorted(str(code) for code in codes)}"


@dataclass(frozen=True, slots=True)
class Placed:
    """One `placeOrder`: its outcome (ACCEPTED, REFUSED, ERROR), the order id or what went
    wrong (the exception's name when there was no answer), and how long the answer took."""

    outcome: str
    detail: str
    elapsed_ms: float


class OrderPlacer:
    """`placeOrder` of `products` through the gateway at `graphql_url` on a KeepAliveClient,
    request `i` as the customer of `tokens[i % len(tokens)]` (requests prepared once)."""

    def __init__(
        self,
        graphql_url: str,
        tokens: Sequence[str],
        products: list[dict[str, Any]],
        *,
        timeout_seconds: float,
        max_connections: int = DRIVER_CONNECTIONS,
    ) -> None:
        target = urlsplit(graphql_url)
        self.client = KeepAliveClient(
            target.hostname or "127.0.0.1",
            target.port or 80,
            max_connections=max_connections,
            timeout_seconds=timeout_seconds,
        )
        body = orjson.dumps({"query": PLACE, "variables": {"products": products}})
        self._requests = [
            self.client.post(
                target.path,
                body,
                {"content-type": "application/json", "authorization": f"Bearer {token}"},
            )
            for token in tokens
        ]

    async def place(self, i: int) -> Placed:
        """Order `i`; `elapsed_ms` from sending to the whole answer."""
        started = time.monotonic()
        try:
            status, content = await self.client.send(self._requests[i % len(self._requests)])
        except (ConnectionError, OSError, TimeoutError) as exc:
            return Placed(ERROR, type(exc).__name__, (time.monotonic() - started) * 1000)
        elapsed_ms = (time.monotonic() - started) * 1000
        outcome, detail = classify(status, content)
        return Placed(outcome, detail, elapsed_ms)

    def close(self) -> None:
        """Close the client's idle connections."""
        self.client.close()
