"""Outages wait, only poison dead-letters (issue 15, item 5), against the real broker.

A handler failing for a reason that is not the message's fault holds its partition: the record
is fetched again with backoff, nothing behind it on the partition (a later event of the same
user) is handled first, the other partitions go on, and nothing is dead-lettered. A message
refused for good is dead-lettered at once. A dead letter's replay reaches only the consumer
group that failed it.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from aiokafka.partitioner import DefaultPartitioner
from pymongo.errors import AutoReconnect

from kafka_admin_service.replay import DlqReplayer
from kafka_admin_service.settings import KafkaAdminSettings
from shared.bus import EventConsumer, Handler, Received
from shared.events import Envelope, NotificationCreated, NotificationRequested
from shared.events.topics import partitions_of
from shared.failures import PermanentFailure
from shared.publisher import EventPublisher
from tests.fixtures.bus import (  # noqa: F401
    TOPIC,
    FailingOne,
    bus_publisher,
    bus_settings,
    created,
    dead_letters,
    started_batch_consumer,
    started_consumer,
)
from tests.fixtures.parts import (  # noqa: F401
    TEST_JWT_SECRET,
    broker_with_topics,
    broker_without_topics,
    eventually,
    read_all,
)


def users_on_two_partitions() -> tuple[str, str]:
    """Two user ids whose events land on different partitions of `TOPIC`."""
    partitioner = DefaultPartitioner()
    everything = list(range(partitions_of(TOPIC)))
    first = f"user-{uuid.uuid4().hex}"
    home = partitioner(first.encode(), everything, everything)
    while True:
        other = f"user-{uuid.uuid4().hex}"
        if partitioner(other.encode(), everything, everything) != home:
            return first, other


async def test_an_outage_holds_one_users_events_in_order_while_other_partitions_go_on(
    kafka_broker: str, publisher: EventPublisher
) -> None:
    stuck, other = users_on_two_partitions()
    outage = {"on": True}
    attempts: dict[str, int] = {}
    handled: list[tuple[str, str]] = []

    async def handler(envelope: Envelope, event: NotificationCreated) -> None:
        if event.user_id not in (stuck, other):
            return
        attempts[event.notification_id] = attempts.get(event.notification_id, 0) + 1
        if event.user_id == stuck and outage["on"]:
            raise AutoReconnect("the primary stepped down")
        handled.append((event.user_id, event.notification_id))

    consumer = await started_consumer(kafka_broker, publisher, handler, f"group-{uuid.uuid4().hex}")
    stuck_events = [created(stuck) for _ in range(3)]
    other_events = [created(other) for _ in range(3)]
    try:
        for event in stuck_events:
            await publisher.publish(event)
        for event in other_events:
            await publisher.publish(event)
        await eventually(
            lambda: (
                [n for u, n in handled if u == other] == [e.notification_id for e in other_events]
            ),
            what="the other partition's events, during the outage",
        )
        first = stuck_events[0].notification_id
        await eventually(lambda: attempts.get(first, 0) >= 3, what="retries of the first event")
        # Nothing behind the failing event on its partition ran, not even once.
        assert not [n for u, n in handled if u == stuck]
        assert set(attempts) & {e.notification_id for e in stuck_events} == {first}
        outage["on"] = False
        await eventually(
            lambda: len([n for u, n in handled if u == stuck]) == len(stuck_events),
            what="the stuck events once the outage is over",
        )
    finally:
        await consumer.stop()
    assert [n for u, n in handled if u == stuck] == [e.notification_id for e in stuck_events]
    assert await dead_letters(kafka_broker, stuck) == []


async def test_a_member_that_stops_while_waiting_leaves_the_message_to_the_next_in_order(
    kafka_broker: str, publisher: EventPublisher
) -> None:
    user = f"user-{uuid.uuid4().hex}"
    group = f"group-{uuid.uuid4().hex}"
    failed: list[str] = []
    handled: list[str] = []

    async def failing(envelope: Envelope, event: NotificationCreated) -> None:
        if event.user_id == user:
            failed.append(event.notification_id)
            raise AutoReconnect("no primary")

    async def healthy(envelope: Envelope, event: NotificationCreated) -> None:
        if event.user_id == user:
            handled.append(event.notification_id)

    events = [created(user) for _ in range(3)]
    first = await started_consumer(kafka_broker, publisher, failing, group)
    try:
        for event in events:
            await publisher.publish(event)
        await eventually(lambda: len(failed) >= 2, what="the first member waiting")
    finally:
        await first.stop()
    second = await started_consumer(kafka_broker, publisher, healthy, group)
    try:
        await eventually(lambda: len(handled) == len(events), what="the next member's turn")
    finally:
        await second.stop()
    assert set(failed) == {events[0].notification_id}, "nothing behind the failed event ran"
    assert handled == [e.notification_id for e in events]
    assert await dead_letters(kafka_broker, user) == []


async def test_a_batch_that_fails_in_an_outage_is_retried_whole_and_in_order(
    kafka_broker: str, publisher: EventPublisher
) -> None:
    user = f"user-{uuid.uuid4().hex}"
    failures_left = [5]
    handled: list[str] = []

    async def handle(received: Sequence[Received]) -> None:
        ids = [event.notification_id for _, event in received if event.user_id == user]
        if ids and failures_left[0] > 0:
            failures_left[0] -= 1
            raise ConnectionResetError("the store is restarting")
        handled.extend(ids)

    events = [created(user) for _ in range(4)]
    for event in events:
        await publisher.publish(event)
    consumer = await started_batch_consumer(
        kafka_broker, publisher, handle, f"group-{uuid.uuid4().hex}"
    )
    try:
        await eventually(lambda: len(handled) == len(events), what="the batch after the outage")
    finally:
        await consumer.stop()
    assert handled == [e.notification_id for e in events]
    assert await dead_letters(kafka_broker, user) == []


async def test_a_message_refused_for_good_is_dead_lettered_at_once(
    kafka_broker: str, publisher: EventPublisher
) -> None:
    user = f"user-{uuid.uuid4().hex}"
    bad, good = created(user), created(user)
    handler = FailingOne(user, bad.notification_id, PermanentFailure, "no such product")
    calls, handled = handler.calls, handler.handled

    consumer = await started_consumer(kafka_broker, publisher, handler, f"group-{uuid.uuid4().hex}")
    try:
        await publisher.publish(bad)
        await publisher.publish(good)
        await eventually(lambda: handled == [good.notification_id], what="the event behind it")
        dead = await eventually(lambda: dead_letters(kafka_broker, user), what="the dead letter")
    finally:
        await consumer.stop()
    assert calls[bad.notification_id] == 1
    headers = dict(dead[0].headers)
    assert headers["dlq_failure"] == b"permanent"
    assert headers["dlq_attempts"] == b"1"


REQUESTED = NotificationRequested.topic  # a consumed topic: its `.dlq` is in the registry


def request(user_id: str, n: int) -> NotificationRequested:
    return NotificationRequested(user_id=user_id, type="alert", content=f"#{n}", send_email=False)


async def test_a_replayed_dead_letter_reaches_only_the_group_that_failed_it(
    own_broker: str,
) -> None:
    user = f"user-{uuid.uuid4().hex}"
    failing, healthy = f"failing-{uuid.uuid4().hex}", f"healthy-{uuid.uuid4().hex}"
    refuse = {"on": True}
    seen: dict[str, list[str]] = {failing: [], healthy: []}

    def handler_of(group: str) -> Handler:
        async def handler(envelope: Envelope, event: NotificationRequested) -> None:
            if event.user_id != user:
                return
            if group == failing and refuse["on"]:
                raise PermanentFailure("refused until the fix is deployed")
            seen[group].append(event.content)

        return handler

    admin_settings = KafkaAdminSettings(
        _env_file=None, kafka_broker=own_broker, jwt_secret=TEST_JWT_SECRET
    )
    replayer = DlqReplayer(admin_settings)
    pub = EventPublisher(admin_settings.model_copy(update={"service_name": "replay-test"}))
    await pub.start()
    consumers = []
    for group in (failing, healthy):
        consumer = EventConsumer(
            bus_settings(own_broker), pub, {REQUESTED: handler_of(group)}, group_id=group
        )
        await consumer.start()
        consumers.append(consumer)
    for consumer in consumers:
        await eventually(consumer.assigned, timeout=30, what="partition assignment")

    async def dead() -> list[Any]:
        return [r for r in await read_all(own_broker, f"{REQUESTED}.dlq") if r.key == user.encode()]

    try:
        await pub.publish(request(user, 1))
        letters = await eventually(dead, what="the dead letter")
        assert dict(letters[0].headers)["dlq_consumer_group"] == failing.encode()
        await eventually(lambda: seen[healthy] == ["#1"], what="the healthy group")

        refuse["on"] = False  # the fix is deployed; the operator replays
        assert await replayer.replay(f"{REQUESTED}.dlq") == 1
        await eventually(lambda: seen[failing] == ["#1"], what="the replay")
        # An event behind the replayed one on the partition proves the healthy group passed it.
        await pub.publish(request(user, 2))
        await eventually(lambda: seen[healthy][-1:] == ["#2"], what="the later event")
        await eventually(lambda: seen[failing][-1:] == ["#2"], what="the later event")
    finally:
        for consumer in consumers:
            await consumer.stop()
        await replayer.close()
        await pub.stop()
    print(f"\n[replay to one group] failing={seen[failing]} healthy={seen[healthy]}")
    assert seen[healthy] == ["#1", "#2"], "the replay went to the group that had handled it"
    assert seen[failing] == ["#1", "#2"]
