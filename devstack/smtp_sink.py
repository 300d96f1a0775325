"""An SMTP server that accepts every message and appends it to one mbox file in a folder
(`messages.mbox`, devstack/mbox.py), and (with `--web-port`) the mail page that shows them
(devstack/mail_page.py).

python -m devstack.smtp_sink --port 2525 --web-port 8025 ./var/mail
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import uvicorn
from aiosmtpd.controller import Controller

from devstack.mail_page import mail_page_app
from devstack.mbox import MboxWriter
from devstack.parts import LOOPBACK
from shared.http_server import FleetServer


class OffersPipelining:
    """An aiosmtpd handler part that offers PIPELINING (RFC 2920) in its EHLO reply. aiosmtpd
    reads commands one after the other from its stream, so commands that come in one write are
    answered in order like any others; it only does not say so."""

    async def handle_EHLO(
        self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        session.host_name = hostname  # what aiosmtpd does itself when no hook is given
        *extensions, last = responses
        return [*extensions, "250-PIPELINING", last]


class MboxHandler(OffersPipelining):
    """aiosmtpd handler: appends each accepted message to the folder's mbox file, kept open.
    (A file per message cost the sink 0.6-0.9 ms of CPU a mail and stalled its loop under load;
    an append costs ~20 us, most of it turning CRLF into LF.)"""

    def __init__(self, folder: Path) -> None:
        self.writer = MboxWriter(folder)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        content = envelope.original_content or envelope.content
        self.writer.append(content, envelope.mail_from or "", datetime.now(UTC))
        return "250 Message accepted for delivery"


class Sink(Controller):
    """The SMTP server's thread; stopping it closes the mbox file."""

    def stop(self, no_assert: bool = False) -> None:
        super().stop(no_assert)
        assert isinstance(self.handler, MboxHandler)
        self.handler.writer.close()


def serve(folder: Path, port: int, host: str = LOOPBACK) -> Controller:
    """Start the sink in a background thread; call `.stop()` on the result."""
    controller = Sink(MboxHandler(folder), hostname=host, port=port)
    controller.start()
    return controller


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("folder", type=Path)
    parser.add_argument("--port", type=int, default=2525)
    parser.add_argument("--host", default=LOOPBACK)
    parser.add_argument("--web-port", type=int, help="serve the mail page on this port")
    args = parser.parse_args()
    controller = serve(args.folder, args.port, args.host)
    print(f"smtp sink on {args.host}:{args.port}, mail in {args.folder}", flush=True)
    try:
        asyncio.run(_serve_until_signal(args.folder.resolve(), args.host, args.web_port))
    finally:
        controller.stop()


class _ServerWithoutSignals(FleetServer):
    """The services' uvicorn server (waking once a second while idle) whose stop is ours: it
    would take SIGTERM over and raise it again when done."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def _serve_until_signal(folder: Path, host: str, web_port: int | None) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    if web_port is None:
        await stop.wait()
        return
    config = uvicorn.Config(mail_page_app(folder), host=host, port=web_port, log_level="warning")
    server = _ServerWithoutSignals(config)
    serving = asyncio.create_task(server.serve())
    print(f"mail page on http://{host}:{web_port}", flush=True)
    await stop.wait()
    server.should_exit = True
    await serving


if __name__ == "__main__":
    main()
