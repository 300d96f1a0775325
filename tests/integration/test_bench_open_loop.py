"""The bench's lean keep-alive client (bench/open_loop.py) does not send on a connection the
server closed while it sat idle (a server's keep-alive timeout): such a request was never
answered and waited out the client's timeout."""

from __future__ import annotations

import asyncio
import time

from bench.open_loop import KeepAliveClient
from devstack.parts import LOOPBACK

ANSWER = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: keep-alive\r\n\r\nok"
CLIENT_TIMEOUT_SECONDS = 5.0


async def test_a_connection_the_server_closed_while_idle_is_not_reused() -> None:
    async def answer_once_then_close(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        await reader.readuntil(b"\r\n\r\n")  # the request's head; its body is empty
        writer.write(ANSWER)
        await writer.drain()
        writer.close()  # as a keep-alive timeout does, once the connection is idle

    server = await asyncio.start_server(answer_once_then_close, LOOPBACK, 0)
    port = server.sockets[0].getsockname()[1]
    client = KeepAliveClient(
        LOOPBACK, port, max_connections=1, timeout_seconds=CLIENT_TIMEOUT_SECONDS
    )
    request = client.post("/", b"", {})
    try:
        assert await client.send(request) == (200, b"ok")
        await asyncio.sleep(0.2)  # the server's close reaches the idle connection
        started = time.monotonic()
        assert await client.send(request) == (200, b"ok")
        assert time.monotonic() - started < CLIENT_TIMEOUT_SECONDS / 2
    finally:
        client.close()
        server.close()
        await server.wait_closed()
