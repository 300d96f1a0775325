"""The notification service's batch handler against the real broker: a batch is stored once
however often it is delivered, announced once, its outbox cleared after the publish, and kept
for the relay when the publish fails."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest

from devstack.parts import free_port
from notification_service.events import NotificationHandlers
from notification_service.mailer import Mailer
from notification_service.repository import NotificationRepository
from notification_service.service import Notifications
from notification_service.settings import NotificationSettings
from shared.bus import Received
from shared.events import Envelope, NotificationCreated, NotificationRequested
from shared.links import LinkSigner
from shared.mongo import MongoStore
from shared.outbox import OUTBOX_FIELD, OutboxRelay
from shared.publisher import EventPublisher
from tests.fixtures.parts import TEST_JWT_SECRET, TEST_MONGO_URI, read_all

pytestmark = pytest.mark.integration

# The writer's own flush owns an entry this long: the relay must leave it alone meanwhile.
FLUSH_TIMEOUT_SECONDS = 600.0


def settings_for(broker: str) -> NotificationSettings:
    return NotificationSettings(
        _env_file=None,
        kafka_broker=broker,
        mongo_uri=TEST_MONGO_URI,
        mongo_database=f"test_{uuid.uuid4().hex}",
        jwt_secret=TEST_JWT_SECRET,
        kafka_request_timeout_ms=1000,
        kafka_startup_timeout_seconds=1,
        kafka_publish_timeout_seconds=2,
        outbox_flush_timeout_seconds=FLUSH_TIMEOUT_SECONDS,
    )


@dataclass
class Parts:
    settings: NotificationSettings
    repository: NotificationRepository
    publisher: EventPublisher

    def handlers(self, publisher: EventPublisher | None = None) -> NotificationHandlers:
        publisher = publisher or self.publisher
        return NotificationHandlers(
            Notifications(
                settings=self.settings,
                repository=self.repository,
                publisher=publisher,
                relay=OutboxRelay(
                    publisher, [self.repository.notifications], 60, FLUSH_TIMEOUT_SECONDS
                ),
                links=LinkSigner(TEST_JWT_SECRET),
                mail_enabled=Mailer(self.settings).enabled,
                wake_sender=lambda: None,
            )
        )


@pytest.fixture
async def parts(kafka_broker: str) -> AsyncIterator[Parts]:
    settings = settings_for(kafka_broker)
    publisher = EventPublisher(settings)
    await publisher.start()
    store = MongoStore(settings.mongo_uri, settings.database_name)
    try:
        yield Parts(settings, NotificationRepository(store.db), publisher)
    finally:
        await publisher.stop()
        await store.close()


def requests(publisher: EventPublisher, user_id: str, count: int) -> list[Received]:
    received: list[Received] = []
    for n in range(count):
        event = NotificationRequested(user_id=user_id, type="other", content=f"Note {n}.")
        received.append((publisher.envelope_for(event), event))
    return received


async def stored(parts: Parts, user_id: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = await parts.repository.notifications.find(
        {"user_id": user_id}
    ).to_list(None)
    return found


async def announced(broker: str, user_id: str) -> list[str]:
    return [
        Envelope.from_bytes(r.value).data["notification_id"]
        for r in await read_all(broker, NotificationCreated.topic)
        if r.key == user_id.encode()
    ]


async def test_a_redelivered_batch_is_stored_and_announced_once(
    parts: Parts, kafka_broker: str
) -> None:
    user_id = uuid.uuid4().hex
    batch = requests(parts.publisher, user_id, 5)
    handlers = parts.handlers()

    await handlers.on_notifications_requested(batch[:2])
    # Redelivered with more behind it (a commit that did not happen), then once more whole.
    await handlers.on_notifications_requested(batch)
    await handlers.on_notifications_requested(batch)

    documents = await stored(parts, user_id)
    assert sorted(d["_id"] for d in documents) == sorted(str(e.id) for e, _ in batch)
    assert all(d[OUTBOX_FIELD] == [] for d in documents)
    assert sorted(await announced(kafka_broker, user_id)) == sorted(str(e.id) for e, _ in batch)


async def test_a_failed_publish_leaves_the_batch_to_the_relay(
    parts: Parts, kafka_broker: str
) -> None:
    user_id = uuid.uuid4().hex
    batch = requests(parts.publisher, user_id, 3)
    unreachable = EventPublisher(
        parts.settings.model_copy(update={"kafka_broker": f"127.0.0.1:{free_port()}"})
    )

    await parts.handlers(unreachable).on_notifications_requested(batch)

    documents = await stored(parts, user_id)
    assert len(documents) == len(batch)
    assert [len(d[OUTBOX_FIELD]) for d in documents] == [1] * len(batch)
    assert await announced(kafka_broker, user_id) == []

    relay = OutboxRelay(
        parts.publisher, [parts.repository.notifications], 60, FLUSH_TIMEOUT_SECONDS
    )
    # Young entries belong to the writer's flush until its timeout; with no writer left (a
    # crash, a shutdown) the relay takes them.
    assert await relay.relay_once() == 0
    assert await relay.relay_once(include_young=True) == len(batch)
    assert all(d[OUTBOX_FIELD] == [] for d in await stored(parts, user_id))
    assert sorted(await announced(kafka_broker, user_id)) == sorted(str(e.id) for e, _ in batch)
