"""An SMTP server that accepts every message and keeps it as a `.eml` file in a folder, and
(with `--web-port`) the mail page that shows them (devstack/mail_page.py).

python -m devstack.smtp_sink --port 2525 --web-port 8025 ./var/mail
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import uvicorn
from aiosmtpd.controller import Controller

from devstack.mail_page import mail_page_app
from devstack.parts import LOOPBACK


class MaildirHandler:
    """aiosmtpd handler: writes each accepted message to its own file, atomically."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
        final = self.folder / f"{stamp}-{uuid.uuid4().hex[:8]}.eml"
        partial = final.with_suffix(".part")
        partial.write_bytes(envelope.original_content or envelope.content)
        partial.rename(final)
        return "250 Message accepted for delivery"


def serve(folder: Path, port: int, host: str = LOOPBACK) -> Controller:
    """Start the sink in a background thread; call `.stop()` on the result."""
    folder.mkdir(parents=True, exist_ok=True)
    controller = Controller(MaildirHandler(folder), hostname=host, port=port)
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


class _ServerWithoutSignals(uvicorn.Server):
    """uvicorn whose stop is ours: it would take SIGTERM over and raise it again when done."""

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
