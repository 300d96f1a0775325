"""Fault-injection helpers: a broker of each test's own (optionally behind a cuttable proxy),
services as real processes (`python -m <service>`), what a test reads back off the topics,
and the tally line every test prints."""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Container, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from devstack.config import environment_without_parts
from devstack.parts import LOOPBACK, EmbeddedPart, free_port, start_broker
from graphql_gateway.settings import GatewaySettings
from shared.events.envelope import Envelope
from shared.events.models import NotificationRequested
from shared.kafka_topics import ensure_topics
from tests.fixtures.fleet import REPO_ROOT
from tests.fixtures.parts import TEST_JWT_SECRET, read_all
from tests.fixtures.proxy import TcpProxy

SERVICE_READY_SECONDS = 60.0
SERVICE_STOP_SECONDS = 10.0
TOPICS_READY_SECONDS = 30.0
_READY_POLL_SECONDS = 0.2
_LOG_TAIL_CHARS = 4000
# A request must answer within what the gateway waits for a service, outage or not (the
# service publishes its events inline only up to OUTBOX_FLUSH_TIMEOUT_SECONDS).
GATEWAY_PATIENCE_SECONDS = GatewaySettings.model_fields["downstream_timeout_seconds"].default
RELAY_INTERVAL_SECONDS = 0.5
# How long the outbox may take to deliver what piled up during a broker outage.
DELIVERY_TIMEOUT_SECONDS = 60.0


@dataclass
class FaultBroker:
    """A Tansu broker of one test; `proxy` (when asked for) is the address clients are given."""

    part: EmbeddedPart
    proxy: TcpProxy | None

    @property
    def direct(self) -> str:
        """The broker's own port. Clients bootstrap there, but the metadata sends them on to
        the advertised address: behind a proxy, read topics only while it is not cut."""
        return self.part.url

    @property
    def advertised(self) -> str:
        """The address services are given: the proxy's when there is one."""
        return self.proxy.address if self.proxy else self.part.url


async def start_fault_broker(*, behind_proxy: bool) -> FaultBroker:
    """A fresh broker with the registry's topics; behind a proxy it advertises the proxy."""
    broker_port = free_port()
    proxy = TcpProxy(broker_port) if behind_proxy else None
    part = await asyncio.to_thread(
        start_broker, broker_port, advertised_port=proxy.port if proxy else None
    )
    try:
        if proxy is not None:
            await proxy.start()
        # Every client, even one bootstrapped on the broker's own port, is sent to the
        # advertised address by the metadata: the proxy must be up first.
        await ensure_topics(
            proxy.address if proxy else part.url, timeout_seconds=TOPICS_READY_SECONDS
        )
    except BaseException:
        if proxy is not None:
            await proxy.stop()
        part.stop()
        raise
    return FaultBroker(part, proxy)


@pytest.fixture
async def fault_broker() -> AsyncIterator[FaultBroker]:
    """A broker of the test's own (a restarted consumer group must not meet other tests')."""
    broker = await start_fault_broker(behind_proxy=False)
    try:
        yield broker
    finally:
        broker.part.stop()


@pytest.fixture
async def proxied_broker() -> AsyncIterator[FaultBroker]:
    """A broker of the test's own that advertises a proxy the test can cut and restore."""
    broker = await start_fault_broker(behind_proxy=True)
    try:
        yield broker
    finally:
        assert broker.proxy is not None
        await broker.proxy.stop()
        broker.part.stop()


class ServiceProcess:
    """One service run as in production (`python -m <module>`), configured by environment."""

    def __init__(self, module: str, env: dict[str, str], log_path: Path) -> None:
        self.module = module
        self.port = free_port()
        self.log_path = log_path
        self.env = environment_without_parts()
        self.env.update(
            {
                "PYTHONPATH": str(REPO_ROOT),
                "HOST": LOOPBACK,
                "PORT": str(self.port),
                "JWT_SECRET": TEST_JWT_SECRET,
                "MONGO_URI": "memory://",
                "LOG_LEVEL": "WARNING",
                **env,
            }
        )
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The service's base URL."""
        return f"http://{LOOPBACK}:{self.port}"

    async def start(self) -> None:
        """Start the process and wait until `/ready` answers 200."""
        self.process = await asyncio.to_thread(self._spawn)
        deadline = time.monotonic() + SERVICE_READY_SECONDS
        async with httpx.AsyncClient(base_url=self.url, timeout=2.0) as client:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise AssertionError(
                        f"{self.module} exited with {self.process.returncode}:\n{self.log_tail()}"
                    )
                try:
                    if (await client.get("/ready")).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(_READY_POLL_SECONDS)
        self.kill()
        raise AssertionError(f"{self.module} was not ready in time:\n{self.log_tail()}")

    def _spawn(self) -> subprocess.Popen[bytes]:
        with self.log_path.open("ab") as log:
            return subprocess.Popen(  # noqa: S603 - our own service module
                [sys.executable, "-m", self.module],
                cwd=REPO_ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs (nothing flushed, nothing committed)."""
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it does not exit in time."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=SERVICE_STOP_SECONDS)
            except subprocess.TimeoutExpired:
                self.kill()

    def log_tail(self) -> str:
        """The end of the process's output (for failure messages)."""
        return self.log_path.read_text(errors="replace")[-_LOG_TAIL_CHARS:]


@dataclass(frozen=True)
class Tally:
    """What a fault test counts; printed as one line so a run shows what happened."""

    sent: int
    stored: int
    duplicated: int
    dlq: int

    def line(self) -> str:
        return (
            f"tally: sent={self.sent} stored={self.stored} "
            f"duplicated={self.duplicated} dlq={self.dlq}"
        )


def report(tally: Tally) -> Tally:
    """Print the tally line (visible with `-s`, and in the captured output on failure)."""
    print(tally.line())
    return tally


def distinct_and_duplicates(keys: Iterable[str]) -> tuple[set[str], int]:
    """The distinct keys and how many records repeated one already seen."""
    counts = Counter(keys)
    return set(counts), sum(n - 1 for n in counts.values())


async def envelopes_on(broker: str, topic: str) -> list[Envelope]:
    """Every envelope on a topic, read from the beginning (records that are not one skipped)."""
    envelopes = []
    for record in await read_all(broker, topic):
        try:
            envelopes.append(Envelope.from_bytes(record.value))
        except Exception:  # noqa: S112 - a poison record is not an envelope; the DLQ test reads it
            continue
    return envelopes


async def ids_on(broker: str, topic: str, field: str, among: Container[str]) -> list[str]:
    """The `field` of each envelope on `topic` whose value is one of `among` (a test's own),
    in topic order, repeats kept (what `distinct_and_duplicates` counts)."""
    values = [str(e.data[field]) for e in await envelopes_on(broker, topic)]
    return [value for value in values if value in among]


def outbox_service(module: str, broker: FaultBroker, log_dir: Path) -> ServiceProcess:
    """`module` on `broker`'s advertised address, its outbox relay retrying every
    RELAY_INTERVAL_SECONDS, under a service name of its own."""
    env = {
        "KAFKA_BROKER": broker.advertised,
        "OUTBOX_RELAY_INTERVAL_SECONDS": str(RELAY_INTERVAL_SECONDS),
        "SERVICE_NAME": f"{module}_{secrets.token_hex(3)}",
    }
    return ServiceProcess(module, env, log_dir / f"{module}.log")


def requested(user_id: str, content: str, correlation_id: str) -> Envelope:
    """The envelope of a `notification.requested` (an in-app alert, no email), as a producing
    service would write it."""
    event = NotificationRequested(user_id=user_id, type="alert", content=content, send_email=False)
    return Envelope(
        type=event.event_type,
        source="fault-test",
        correlation_id=correlation_id,
        data=event.model_dump(mode="json"),
    )


def headers_of(record: Any) -> dict[str, str]:
    """A record's headers as text."""
    return {name: value.decode() for name, value in record.headers or ()}
