"""uvicorn's httptools protocol, sending each response in one write.

uvicorn writes a response's status line and headers when the app sends `http.response.start`
and the body when it sends `http.response.body`: two `send()` system calls, two TCP segments,
and on loopback the receiver's side of the TCP stack runs inside each of them. On the 2-core
machines of issue 16 socket writes were the largest single cost of every service under
placeOrder (6-22% of each one's CPU). A write is held until the next one, so a response the app
sends in one go (every JSON answer here) leaves in one write as soon as its body is sent; a
streamed response still goes out as it is produced, a turn of the event loop later at most.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class CoalescingTransport:
    """A transport that holds a write until the next one and sends both as one: a response's
    head goes out with its body, at once. A write that nothing follows in the same turn of the
    event loop (a streamed response's head or chunk) goes out alone at the end of that turn.
    Every other call goes to the real transport (held bytes first where order matters)."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self.transport = transport
        self._loop = loop
        self._held: bytes | None = None

    def write(self, data: bytes | bytearray | memoryview) -> None:
        held = self._held
        if held is None:
            self._held = bytes(data)
            self._loop.call_soon(self.flush)
            return
        self._held = None
        self._send(held + data)

    def writelines(self, chunks: Any) -> None:
        self.write(b"".join(chunks))

    def flush(self) -> None:
        """Send what is held (nothing when a later write or a close already sent it)."""
        held = self._held
        if held is not None:
            self._held = None
            self._send(held)

    def _send(self, data: bytes) -> None:
        if not self.transport.is_closing():
            self.transport.write(data)

    def close(self) -> None:
        self.flush()
        self.transport.close()

    def write_eof(self) -> None:
        self.flush()
        self.transport.write_eof()

    def get_write_buffer_size(self) -> int:
        return self.transport.get_write_buffer_size() + len(self._held or b"")

    def __getattr__(self, name: str) -> Any:
        return getattr(self.transport, name)


class CoalescingHttpToolsProtocol(HttpToolsProtocol):
    """HttpToolsProtocol writing through a `CoalescingTransport`; a WebSocket upgrade gets the
    real transport (the websocket protocol does its own framing and flow control)."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(CoalescingTransport(transport, self.loop))  # type: ignore[arg-type]

    def handle_websocket_upgrade(self) -> None:
        coalescing = self.transport
        if isinstance(coalescing, CoalescingTransport):
            coalescing.flush()
            self.transport = coalescing.transport
        super().handle_websocket_upgrade()
