"""Each response in one write (shared/http_protocol.py), through a real uvicorn server configured
as every service's (shared/serve.py) and a client on a real socket: a JSON answer leaves in one
socket write instead of two (status line and headers, then the body), a streamed answer still
leaves as it is produced, a connection asked to close gets the whole answer first, and a
WebSocket upgrade still works."""

from __future__ import annotations

import asyncio
import socket
import threading
from asyncio.selector_events import _SelectorSocketTransport  # type: ignore[attr-defined]
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI, WebSocket
from fastapi.responses import StreamingResponse
from websockets.sync.client import connect

from shared.http_protocol import CoalescingTransport
from shared.serve import server_config
from shared.settings import ServiceSettings
from tests.fixtures.apps import read_to_close, served_in_thread

WAIT_SECONDS = 10
ANSWER = {"order": {"id": "o-1", "products": [{"productId": "7", "quantity": 1}]}}


def probe_app(streamed_on: threading.Event) -> FastAPI:
    app = FastAPI()

    @app.get("/json")
    async def json_answer() -> dict[str, Any]:
        return ANSWER

    @app.get("/stream")
    async def stream() -> StreamingResponse:
        async def parts() -> AsyncIterator[bytes]:
            yield b"first;"
            # The rest only once the client has read the first part: a held first part would
            # never reach it, and the test would time out below.
            await asyncio.to_thread(streamed_on.wait, WAIT_SECONDS)
            yield b"second"

        return StreamingResponse(parts(), media_type="text/plain")

    @app.websocket("/echo")
    async def echo(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_text(await websocket.receive_text())
        await websocket.close()

    return app


@pytest.fixture
def served() -> Iterator[tuple[tuple[str, int], threading.Event]]:
    streamed_on = threading.Event()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen(16)
        config = server_config(
            probe_app(streamed_on),
            ServiceSettings.model_construct(host="127.0.0.1", port=listening.getsockname()[1]),
        )
        with served_in_thread(uvicorn.Server(config), listening):
            try:
                yield listening.getsockname(), streamed_on
            finally:
                streamed_on.set()  # a stream still held back would hold up the server's stop


@pytest.fixture
def socket_writes(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """Every write on an asyncio socket transport: the server's alone (the client's socket is
    a blocking one)."""
    writes: list[bytes] = []
    real_write = _SelectorSocketTransport.write

    def counted(self: Any, data: bytes) -> None:
        writes.append(bytes(data))
        real_write(self, data)

    monkeypatch.setattr(_SelectorSocketTransport, "write", counted)
    return writes


def request(path: str, *, close: bool) -> bytes:
    connection = "close" if close else "keep-alive"
    return f"GET {path} HTTP/1.1\r\nHost: probe\r\nConnection: {connection}\r\n\r\n".encode()


def read_until(client: socket.socket, ending: bytes) -> bytes:
    received = b""
    while not received.endswith(ending):
        chunk = client.recv(4096)
        assert chunk, f"closed before {ending!r}: {received!r}"
        received += chunk
    return received


def test_a_json_answer_leaves_in_one_write(
    served: tuple[tuple[str, int], threading.Event], socket_writes: list[bytes]
) -> None:
    address, _ = served
    with socket.create_connection(address, timeout=WAIT_SECONDS) as client:
        for _ in range(3):  # on one kept-alive connection
            client.sendall(request("/json", close=False))
            received = read_until(client, b"]}}")
    head, _, body = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    assert body == b'{"order":{"id":"o-1","products":[{"productId":"7","quantity":1}]}}'
    # Without the coalescing each answer is two writes: 6.
    assert len(socket_writes) == 3, socket_writes
    assert all(write.endswith(b"]}}") for write in socket_writes)


def test_a_closing_connection_gets_the_whole_answer_first(
    served: tuple[tuple[str, int], threading.Event],
) -> None:
    address, _ = served
    with socket.create_connection(address, timeout=WAIT_SECONDS) as client:
        client.sendall(request("/json", close=True))
        received = read_to_close(client)
    assert received.startswith(b"HTTP/1.1 200")
    assert received.endswith(b"]}}")


def test_a_streamed_answer_leaves_as_it_is_produced(
    served: tuple[tuple[str, int], threading.Event],
) -> None:
    address, streamed_on = served
    with socket.create_connection(address, timeout=WAIT_SECONDS) as client:
        client.sendall(request("/stream", close=True))
        # The head and the first part arrive while the rest is still held back.
        first = read_until(client, b"first;\r\n")
        streamed_on.set()
        rest = read_to_close(client)
    assert first.startswith(b"HTTP/1.1 200")
    assert b"transfer-encoding: chunked" in first
    assert rest == b"6\r\nsecond\r\n0\r\n\r\n"


def test_a_websocket_upgrade_still_works(
    served: tuple[tuple[str, int], threading.Event],
) -> None:
    (host, port), _ = served
    with connect(f"ws://{host}:{port}/echo", open_timeout=WAIT_SECONDS) as websocket:
        websocket.send("hello")
        assert websocket.recv(timeout=WAIT_SECONDS) == "hello"


class RecordingTransport:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def get_write_buffer_size(self) -> int:
        return 0

    def get_extra_info(self, name: str) -> str:
        return f"extra:{name}"


async def test_a_write_waits_for_the_next_one_or_the_end_of_the_turn() -> None:
    real = RecordingTransport()
    coalescing = CoalescingTransport(real, asyncio.get_running_loop())  # type: ignore[arg-type]
    coalescing.write(b"head;")
    assert real.writes == []
    assert coalescing.get_write_buffer_size() == len(b"head;")
    coalescing.write(b"body;")  # a head's body: both leave at once
    assert real.writes == [b"head;body;"]
    coalescing.writelines([b"chunk", b";"])  # nothing follows it in this turn
    assert real.writes == [b"head;body;"]
    await asyncio.sleep(0)  # the end of this turn
    assert real.writes == [b"head;body;", b"chunk;"]
    coalescing.write(b"last")
    coalescing.close()
    assert real.writes == [b"head;body;", b"chunk;", b"last"]
    assert real.closed
    await asyncio.sleep(0)  # the flush scheduled for "last" finds nothing left
    assert real.writes == [b"head;body;", b"chunk;", b"last"]
    assert coalescing.get_extra_info("peername") == "extra:peername"
