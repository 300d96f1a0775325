"""Dozing consumers (shared/wakeups.py): an idle consumer pauses its partitions, a publisher's
wake-up through Redis resumes it at once, and without one it still finds every record at its
idle poll, in order, once."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from shared.bus import EventConsumer
from shared.events import Envelope, NotificationCreated
from shared.publisher import EventPublisher
from tests.fixtures.bus import (  # noqa: F401 - the publisher fixture
    bus_publisher,
    bus_settings,
    created,
    started_consumer,
)
from tests.fixtures.parts import eventually

# Long enough that a record found within the tests' wait can only have come by a wake-up.
NEVER_IN_THIS_TEST = 600.0


class Seen:
    """The notification ids one user's events delivered, in order."""

    def __init__(self, user: str) -> None:
        self.user = user
        self.ids: list[str] = []

    async def __call__(self, envelope: Envelope, event: NotificationCreated) -> None:
        if event.user_id == self.user:
            self.ids.append(event.notification_id)


def idle_settings(**extra: Any) -> dict[str, Any]:
    return {"kafka_idle_after_seconds": 0.3, "kafka_wake_throttle_seconds": 0.1, **extra}


@pytest.fixture
async def waking_publisher(kafka_broker: str, redis_url: str) -> AsyncIterator[EventPublisher]:
    """A publisher that sends wake-ups (on the tests' Redis)."""
    publisher = EventPublisher(bus_settings(kafka_broker, redis_url=redis_url, **idle_settings()))
    await publisher.start()
    try:
        yield publisher
    finally:
        await publisher.stop()


async def test_a_dozing_consumer_is_woken_by_the_publisher_of_its_partition(
    kafka_broker: str, redis_url: str, waking_publisher: EventPublisher
) -> None:
    assert waking_publisher.wakeups.enabled
    seen = Seen(uuid.uuid4().hex)
    consumer: EventConsumer = await started_consumer(
        kafka_broker,
        waking_publisher,
        seen,
        f"idle-{uuid.uuid4().hex}",
        redis_url=redis_url,
        **idle_settings(kafka_idle_poll_seconds=NEVER_IN_THIS_TEST),
    )
    try:
        await eventually(consumer.dozing, what="the idle consumer to doze")
        events = [created(seen.user) for _ in range(3)]
        for event in events:
            await waking_publisher.publish(event)
        await eventually(lambda: len(seen.ids) == 3, what="the three events, delivered awake")
        assert seen.ids == [e.notification_id for e in events]
        # Nothing more arrives: it dozes again.
        await eventually(consumer.dozing, what="the consumer to doze again")
        later = created(seen.user)
        await waking_publisher.publish(later)
        await eventually(lambda: len(seen.ids) == 4, what="an event after the second doze")
    finally:
        await consumer.stop()


async def test_without_wake_ups_a_dozing_consumer_finds_every_record_at_its_idle_poll(
    kafka_broker: str, publisher: EventPublisher
) -> None:
    assert not publisher.wakeups.enabled  # no Redis: nothing wakes it
    seen = Seen(uuid.uuid4().hex)
    consumer = await started_consumer(
        kafka_broker,
        publisher,
        seen,
        f"idle-{uuid.uuid4().hex}",
        **idle_settings(kafka_idle_poll_seconds=0.5),
    )
    try:
        await eventually(consumer.dozing, what="the idle consumer to doze")
        events = [created(seen.user) for _ in range(20)]
        for event in events:
            await publisher.publish(event)
        await eventually(lambda: len(seen.ids) >= 20, what="every event, found at a poll")
        assert seen.ids == [e.notification_id for e in events]  # in order, each once
    finally:
        await consumer.stop()
