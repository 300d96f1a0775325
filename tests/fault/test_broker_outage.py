"""Fault (b): the broker unreachable for 10 s while registrations go on.

The user service runs as a real process whose only way to the broker is a proxy the test cuts
(the broker advertises the proxy's address, so every connection goes through it). While it is
cut, POST /users still succeeds: the user and its `user.registered` are one document write
(the outbox); the immediate publish gives up after OUTBOX_FLUSH_TIMEOUT_SECONDS (defaults
here, as in production) and leaves the event pending, so each request still answers within
the gateway's downstream timeout (the test's client waits no longer than the gateway would).
Once the proxy is restored the relay publishes every pending event.

The embedded broker keeps its log in memory, so what is tested is what the code guarantees:
the outbox holds the events through the outage and delivers them afterwards.

Counted: `sent` = registrations answered 201; `stored` = distinct user ids among the
`user.registered` events on the topic (read once the proxy is back); `duplicated` = records
beyond the first per user (a publish that timed out may still have reached the broker before
the relay sent it again: a duplicate delivery, harmless because consumers are idempotent on the
envelope id); `dlq` = records on `user.registered.dlq` (nothing consumes here, so 0).
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import pytest

from shared.events.models import UserRegistered
from shared.events.topics import dead_letter_topic
from tests.fault.conftest import (
    DELIVERY_TIMEOUT_SECONDS,
    GATEWAY_PATIENCE_SECONDS,
    FaultBroker,
    Tally,
    distinct_and_duplicates,
    ids_on,
    outbox_service,
    report,
)
from tests.fixtures.parts import eventually, read_all

pytestmark = [pytest.mark.fault, pytest.mark.timeout(150)]

OUTAGE_SECONDS = 10.0
WRITERS = 4
BEFORE_AND_AFTER = 5


async def _register(client: httpx.AsyncClient, run: str, n: int) -> str:
    email = f"outage-{run}-{n}@example.com"
    response = await client.post(
        "/users", json={"name": f"User {n}", "email": email, "password": "outage-password-1"}
    )
    assert response.status_code == 201, (
        f"registration failed during the fault: {response.status_code} {response.text}"
    )
    return str(response.json()["user"]["id"])


async def test_registrations_during_a_broker_outage_are_all_published(
    proxied_broker: FaultBroker, tmp_path: Path
) -> None:
    proxy = proxied_broker.proxy
    assert proxy is not None
    service = outbox_service("user_service", proxied_broker, tmp_path)
    await service.start()
    run = secrets.token_hex(4)
    user_ids: list[str] = []
    counter = iter(range(1_000_000))
    try:
        async with httpx.AsyncClient(
            base_url=service.url, timeout=GATEWAY_PATIENCE_SECONDS
        ) as client:
            for _ in range(BEFORE_AND_AFTER):
                user_ids.append(await _register(client, run, next(counter)))

            await proxy.cut()
            outage_ends = time.monotonic() + OUTAGE_SECONDS

            async def writer() -> None:
                while time.monotonic() < outage_ends:
                    user_ids.append(await _register(client, run, next(counter)))

            await asyncio.gather(*(writer() for _ in range(WRITERS)))
            during = len(user_ids) - BEFORE_AND_AFTER
            await proxy.restore()

            for _ in range(BEFORE_AND_AFTER):
                user_ids.append(await _register(client, run, next(counter)))

        expected = set(user_ids)

        async def published() -> list[str]:
            return await ids_on(proxied_broker.direct, UserRegistered.topic, "user_id", expected)

        try:
            await eventually(
                lambda: _all(published, expected),
                timeout=DELIVERY_TIMEOUT_SECONDS,
                interval=1.0,
                what="every registration's user.registered on the topic",
            )
        finally:
            distinct, duplicated = distinct_and_duplicates(await published())
            dlq = await read_all(proxied_broker.direct, dead_letter_topic(UserRegistered.topic))
            report(Tally(len(user_ids), len(distinct), duplicated, len(dlq)))
            print(f"registrations during the {OUTAGE_SECONDS:.0f} s outage: {during}")
        assert during > 0, "no registration was made while the broker was unreachable"
        assert distinct == expected, f"missing: {sorted(expected - distinct)}"
        assert dlq == []
    finally:
        service.stop()


async def _all(probe: Callable[[], Awaitable[list[str]]], expected: set[str]) -> bool:
    return set(await probe()) == expected
