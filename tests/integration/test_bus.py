"""The event bus against the real broker: commit after success, retries, dead letters."""

from __future__ import annotations

import uuid
from typing import Any

from shared.events import Envelope, NotificationCreated
from shared.logging import correlation_scope, current_correlation_id
from shared.publisher import CORRELATION_HEADER, EventPublisher
from tests.fixtures.bus import (  # noqa: F401
    TOPIC,
    FailingOne,
    bus_publisher,
    commit_requests,
    created,
    dead_letters,
    started_consumer,
)
from tests.fixtures.parts import eventually, read_all


async def test_handled_events_are_committed_and_not_redelivered(
    kafka_broker: str, publisher: EventPublisher
) -> None:
    user = f"user-{uuid.uuid4().hex}"
    group = f"group-{uuid.uuid4().hex}"
    seen: list[str] = []

    async def handler(envelope: Envelope, event: NotificationCreated) -> None:
        if event.user_id == user:
            seen.append(event.notification_id)

    consumer = await started_consumer(kafka_broker, publisher, handler, group)
    first = created(user)
    await publisher.publish(first)
    await eventually(lambda: seen == [first.notification_id], what="first event")
    await consumer.stop()

    second = created(user)
    await publisher.publish(second)
    consumer = await started_consumer(kafka_broker, publisher, handler, group)
    try:
        await eventually(lambda: second.notification_id in seen, what="second event")
    finally:
        await consumer.stop()
    assert seen == [first.notification_id, second.notification_id]


async def test_a_fetch_is_committed_once_after_all_its_events_are_handled(
    kafka_broker: str, publisher: EventPublisher, commits: list[dict[Any, int]]
) -> None:
    # A commit per event was a broker round trip per event; one per fetch covers them all.
    user = f"user-{uuid.uuid4().hex}"
    group = f"group-{uuid.uuid4().hex}"
    handled: list[str] = []

    async def handler(envelope: Envelope, event: NotificationCreated) -> None:
        handled.append(event.notification_id)

    events = [created(user) for _ in range(20)]
    for event in events:  # one key: one partition, all there before the consumer starts
        await publisher.publish(event)
    consumer = await started_consumer(kafka_broker, publisher, handler, group)
    try:
        await eventually(
            lambda: {e.notification_id for e in events} <= set(handled), what="all events"
        )
    finally:
        await consumer.stop()
    assert 0 < len(commits) < len(handled)

    # What was committed covers every handled event: a restart in the group gets only news.
    late = created(user)
    await publisher.publish(late)
    again: list[str] = []

    async def second_handler(envelope: Envelope, event: NotificationCreated) -> None:
        again.append(event.notification_id)

    consumer = await started_consumer(kafka_broker, publisher, second_handler, group)
    try:
        await eventually(lambda: late.notification_id in again, what="the late event")
    finally:
        await consumer.stop()
    assert again == [late.notification_id]


async def test_correlation_id_travels_with_the_event(
    kafka_broker: str, publisher: EventPublisher
) -> None:
    user = f"user-{uuid.uuid4().hex}"
    seen: list[tuple[str, str | None]] = []

    async def handler(envelope: Envelope, event: NotificationCreated) -> None:
        if event.user_id == user:
            seen.append((envelope.correlation_id, current_correlation_id()))

    consumer = await started_consumer(kafka_broker, publisher, handler, f"group-{uuid.uuid4().hex}")
    try:
        with correlation_scope("corr-from-the-gateway"):
            await publisher.publish(created(user))
        await eventually(lambda: seen, what="event")
    finally:
        await consumer.stop()
    assert seen == [("corr-from-the-gateway", "corr-from-the-gateway")]
    records = [r for r in await read_all(kafka_broker, TOPIC) if r.key == user.encode()]
    assert dict(records[0].headers)[CORRELATION_HEADER] == b"corr-from-the-gateway"


async def test_a_failure_past_the_retry_horizon_is_dead_lettered_and_the_partition_moves_on(
    kafka_broker: str, publisher: EventPublisher
) -> None:
    user = f"user-{uuid.uuid4().hex}"
    bad = created(user)
    handler = FailingOne(user, bad.notification_id, RuntimeError, "the database is on fire")
    attempts, handled = handler.calls, handler.handled

    consumer = await started_consumer(
        kafka_broker,
        publisher,
        handler,
        f"group-{uuid.uuid4().hex}",
        kafka_retry_backoff_max_seconds=0.05,
        kafka_retry_horizon_seconds=0.5,
    )
    good = created(user)  # same key: same partition, right behind the bad one
    try:
        await publisher.publish(bad)
        await publisher.publish(good)
        await eventually(
            lambda: good.notification_id in handled, what="the next event on the partition"
        )
    finally:
        await consumer.stop()
    assert attempts[bad.notification_id] > 1

    dead = await dead_letters(kafka_broker, user)
    assert len(dead) == 1
    headers = dict(dead[0].headers)
    assert headers["dlq_attempts"] == str(attempts[bad.notification_id]).encode()
    assert headers["dlq_failure"] == b"transient"
    assert headers["dlq_original_topic"] == TOPIC.encode()
    assert b"the database is on fire" in headers["dlq_error"]
    assert {"dlq_original_partition", "dlq_original_offset", "dlq_first_failure"} <= headers.keys()
    assert Envelope.from_bytes(dead[0].value).data["notification_id"] == bad.notification_id


async def test_poison_message_goes_straight_to_the_dlq(
    kafka_broker: str, publisher: EventPublisher
) -> None:
    key = f"poison-{uuid.uuid4().hex}"
    calls: list[Any] = []

    async def handler(envelope: Envelope, event: NotificationCreated) -> None:
        calls.append(event)

    consumer = await started_consumer(kafka_broker, publisher, handler, f"group-{uuid.uuid4().hex}")
    try:
        await publisher.publish_raw(TOPIC, key.encode(), b"\x00 definitely not json", [])
        await eventually(
            lambda: dead_letters(kafka_broker, key), what="poison message in the DLQ", timeout=20
        )
    finally:
        await consumer.stop()
    dead = await dead_letters(kafka_broker, key)
    assert dict(dead[0].headers)["dlq_attempts"] == b"0"
    assert dead[0].value == b"\x00 definitely not json"
    assert not [c for c in calls if getattr(c, "user_id", None) == key]
