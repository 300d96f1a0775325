"""Fault (e): the database failing for 60 s while requests keep arriving (issue 15, item 5).

The notification service runs in this process (its store is the in-process one, which the
test makes fail: every collection call raises pymongo's `AutoReconnect`, as a MongoDB failover
does) on a broker of the test's own. Requests of several users are written before, during and
after the outage. A failure that is not the message's fault holds the message's partition and
is retried with backoff, so once the store is back every request is stored, none is
dead-lettered, and each user's notifications are stored in the order they were requested. The
retry settings are small (first wait 0.1 s, cap 2 s) and the horizon (5 minutes) longer than
the outage, as in production (15 minutes) relative to an ordinary failover.

Counted: `sent` = requests written; `stored` = distinct notifications of this test in the
store; `duplicated` = `notification.created` records beyond the first per notification (a
redelivered batch stores nothing twice, but its events may be published again: consumers are
idempotent on the envelope id); `dlq` = dead letters of this test's users.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import mongomock.collection
import pytest
from aiokafka import AIOKafkaProducer
from pymongo.errors import AutoReconnect

from notification_service.main import create_app
from notification_service.settings import NotificationSettings
from shared.bus import EventConsumer
from shared.events.models import NotificationCreated, NotificationRequested
from shared.events.topics import dead_letter_topic
from tests.fault.conftest import (
    FaultBroker,
    Tally,
    distinct_and_duplicates,
    ids_on,
    report,
    requested,
)
from tests.fixtures.apps import running_service, service_settings
from tests.fixtures.parts import eventually, read_all

pytestmark = [pytest.mark.fault, pytest.mark.timeout(300)]

OUTAGE_SECONDS = 60.0
USERS = 4
BEFORE, DURING, AFTER = 3, 6, 3
DELIVERY_TIMEOUT_SECONDS = 90.0
# Every collection call the service makes (writes, reads, the outbox relay, the mail sender).
_STORE_CALLS = (
    "insert_one",
    "insert_many",
    "find",
    "find_one",
    "find_one_and_update",
    "update_one",
    "update_many",
    "delete_one",
    "delete_many",
    "count_documents",
    "bulk_write",
    "replace_one",
)


class StoreOutage:
    """While `on`, every call of the in-process store raises `AutoReconnect`."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.on = False
        self.refused = 0
        for name in _STORE_CALLS:
            original = getattr(mongomock.collection.Collection, name)
            monkeypatch.setattr(mongomock.collection.Collection, name, self._failing(original))

    def _failing(self, original: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            if self.on:
                self.refused += 1
                raise AutoReconnect("the primary stepped down (fault test)")
            return original(*args, **kwargs)

        return call


@pytest.fixture
async def service(
    fault_broker: FaultBroker, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[Any, StoreOutage]]:
    outage = StoreOutage(monkeypatch)
    settings = service_settings(
        NotificationSettings,
        fault_broker.advertised,
        mongo_uri="memory://",
        kafka_retry_backoff_seconds=0.1,
        kafka_retry_backoff_max_seconds=2.0,
        kafka_retry_horizon_seconds=300.0,
        outbox_relay_interval_seconds=0.5,
    )
    async with running_service(create_app, settings) as running:
        app = running.app
        consumer: EventConsumer = app.state.runtime.consumers[0]
        await eventually(consumer.assigned, timeout=60, what="the consumer's partitions")
        yield app.state.service.repository, outage


async def test_a_minute_without_the_store_loses_nothing_and_dead_letters_nothing(
    fault_broker: FaultBroker, service: tuple[Any, StoreOutage]
) -> None:
    repository, outage = service
    run = secrets.token_hex(4)
    users = [f"store-outage-{run}-{n}" for n in range(USERS)]
    sent: dict[str, list[str]] = {user: [] for user in users}
    ids: set[str] = set()

    async def send(producer: AIOKafkaProducer, count: int, phase: str) -> None:
        for n in range(count):
            for user in users:
                content = f"{phase} {n}"
                envelope = requested(user, content, f"{run}-{phase}-{n}")
                await producer.send_and_wait(
                    NotificationRequested.topic, envelope.to_bytes(), key=user.encode()
                )
                sent[user].append(content)
                ids.add(str(envelope.id))

    async def stored(user: str) -> list[str]:
        cursor = repository.notifications.find({"user_id": user}).sort("sent_at", 1)
        return [doc["content"] for doc in await cursor.to_list(None)]

    async def everything_stored() -> bool:
        counts = [len(await stored(user)) for user in users]
        return counts == [len(sent[user]) for user in users]

    producer = AIOKafkaProducer(bootstrap_servers=fault_broker.direct, acks="all")
    await producer.start()
    try:
        await send(producer, BEFORE, "before")
        await eventually(everything_stored, timeout=30, what="the requests before the outage")
        outage.on = True
        started = time.monotonic()
        # Requests keep arriving through the first part of the outage.
        for n in range(DURING):
            await send(producer, 1, f"during {n}")
            await asyncio.sleep(OUTAGE_SECONDS / (2 * DURING))
        await eventually(
            lambda: outage.refused > 0, what="the service meeting the outage", timeout=10
        )
        await asyncio.sleep(max(0.0, OUTAGE_SECONDS - (time.monotonic() - started)))
        refused_during_outage = outage.refused
        outage.on = False
        await send(producer, AFTER, "after")
        await eventually(
            everything_stored,
            timeout=DELIVERY_TIMEOUT_SECONDS,
            interval=0.5,
            what="every request stored after the outage",
        )
    finally:
        outage.on = False
        await producer.stop()

    async def created_of_this_test() -> list[str]:
        return await ids_on(fault_broker.direct, NotificationCreated.topic, "notification_id", ids)

    created = await eventually(
        lambda: _when_complete(created_of_this_test, len(ids)),
        timeout=30,
        what="every notification.created published",
    )
    distinct, duplicated = distinct_and_duplicates(created)
    dead = [
        r
        for r in await read_all(fault_broker.direct, dead_letter_topic(NotificationRequested.topic))
        if r.key is not None and r.key.decode() in users
    ]
    stored_ids = {
        doc["_id"]
        for doc in await repository.notifications.find({"user_id": {"$in": users}}).to_list(None)
    }
    report(Tally(len(ids), len(stored_ids), duplicated, len(dead)))
    print(f"store calls refused during the {OUTAGE_SECONDS:.0f} s outage: {refused_during_outage}")

    assert stored_ids == ids, "every request is stored once the store is back"
    assert distinct == ids
    assert dead == [], "an outage dead-letters nothing"
    for user in users:
        assert await stored(user) == sent[user], f"{user}'s requests were stored out of order"


async def _when_complete(read: Callable[[], Any], count: int) -> list[str] | None:
    found: list[str] = await read()
    return found if len(set(found)) >= count else None
