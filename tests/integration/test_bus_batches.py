"""Batch handlers against the real broker: one call per fetch, commit after the batch, and the
single-message guarantees kept (poison to the DLQ, retries and dead letters for the one event
that fails, nothing else held back)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from shared.bus import Received
from shared.events import Envelope
from shared.failures import PermanentFailure
from shared.publisher import EventPublisher
from tests.fixtures.bus import (  # noqa: F401
    TOPIC,
    bus_publisher,
    created,
    dead_letters,
    mine,
    publish_all,
    started_batch_consumer,
    started_consumer,
)
from tests.fixtures.parts import eventually

consume = started_batch_consumer


async def test_a_fetch_is_one_call_and_is_not_redelivered_once_committed(
    kafka_broker: str, publisher: EventPublisher
) -> None:
    user, group = f"user-{uuid.uuid4().hex}", f"group-{uuid.uuid4().hex}"
    calls: list[list[str]] = []

    async def handle(received: Sequence[Received]) -> None:
        if ids := mine(user, received):
            calls.append(ids)

    # Published before the group exists: the first fetch finds them all on the partition.
    sent = await publish_all(publisher, user, 20)
    consumer = await consume(kafka_broker, publisher, handle, group)
    try:
        await eventually(lambda: sum(len(c) for c in calls) == len(sent), what="all events")
    finally:
        await consumer.stop()
    assert [i for c in calls for i in c] == sent
    assert len(calls) < len(sent)  # batched, not one call per event

    later = await publish_all(publisher, user, 1)
    consumer = await consume(kafka_broker, publisher, handle, group)
    try:
        await eventually(lambda: calls[-1] == later, what="the later event")
    finally:
        await consumer.stop()
    assert [i for c in calls for i in c] == sent + later


async def test_poison_inside_a_batch_is_dead_lettered_and_the_rest_handled(
    kafka_broker: str, publisher: EventPublisher
) -> None:
    user = f"user-{uuid.uuid4().hex}"
    handled: list[str] = []

    async def handle(received: Sequence[Received]) -> None:
        handled.extend(mine(user, received))

    before = await publish_all(publisher, user, 2)
    await publisher.publish_raw(TOPIC, user.encode(), b"{not an envelope", [])
    await publisher.publish_raw(
        TOPIC,
        user.encode(),
        Envelope(type="Nope", source="t", correlation_id="c", data={}).to_bytes(),
        [],
    )
    after = await publish_all(publisher, user, 2)
    consumer = await consume(kafka_broker, publisher, handle, f"group-{uuid.uuid4().hex}")
    try:
        await eventually(lambda: handled == before + after, what="the valid events")
        dead = await eventually(lambda: _dead_for(kafka_broker, user, 2), what="both poisons")
    finally:
        await consumer.stop()
    assert dead[0].value == b"{not an envelope"  # the original bytes, in order
    assert {dict(r.headers)["dlq_attempts"] for r in dead} == {b"0"}


async def test_an_event_refused_for_good_is_dead_lettered_alone(
    kafka_broker: str, publisher: EventPublisher
) -> None:
    user = f"user-{uuid.uuid4().hex}"
    sent = await publish_all(publisher, user, 5)
    bad = sent[2]
    handled: list[str] = []
    calls_with_bad: list[int] = []

    async def handle(received: Sequence[Received]) -> None:
        ids = mine(user, received)
        if bad in ids:
            calls_with_bad.append(len(ids))
            raise PermanentFailure("this one event is broken")
        handled.extend(ids)

    consumer = await consume(kafka_broker, publisher, handle, f"group-{uuid.uuid4().hex}")
    try:
        await eventually(lambda: len(handled) == 4, what="the four good events")
        dead = await eventually(lambda: _dead_for(kafka_broker, user, 1), what="the bad event")
    finally:
        await consumer.stop()
    assert handled == [i for i in sent if i != bad]  # each once, in order
    # Once inside the batch, then once alone: refused for good, it is not tried again.
    assert calls_with_bad[0] > 1
    assert calls_with_bad[1:] == [1]
    headers = dict(dead[0].headers)
    assert headers["dlq_attempts"] == b"1"
    assert headers["dlq_failure"] == b"permanent"
    assert b"this one event is broken" in headers["dlq_error"]
    assert Envelope.from_bytes(dead[0].value).data["notification_id"] == bad


async def _dead_for(broker: str, key: str, count: int) -> list[Any] | None:
    dead = await dead_letters(broker, key)
    return dead if len(dead) == count else None
