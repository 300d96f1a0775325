"""No message the fleet publishes exceeds KAFKA_MAX_MESSAGE_BYTES: the publisher refuses it
before it reaches the broker, whichever way it is published (directly, in a batch, queued in
an outbox)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from shared.events import NotificationCreated
from shared.outbox import outbox_entry
from shared.publisher import EventPublisher, MessageTooLarge, headers_of, message_size
from tests.fixtures.bus import TOPIC, bus_settings, created
from tests.fixtures.parts import envelope_or_none, eventually, read_all

pytestmark = pytest.mark.integration

LIMIT = 4096


@pytest.fixture
async def small(kafka_broker: str) -> AsyncIterator[EventPublisher]:
    """A publisher whose limit is LIMIT bytes."""
    publisher = EventPublisher(bus_settings(kafka_broker, kafka_max_message_bytes=LIMIT))
    await publisher.start()
    try:
        yield publisher
    finally:
        await publisher.stop()


def sized(user_id: str, size: int, publisher: EventPublisher) -> NotificationCreated:
    """An event whose published record weighs exactly `size` bytes."""
    event = created(user_id)
    base = publisher.envelope_for(event)
    weight = message_size(user_id.encode(), base.to_bytes(), headers_of(base))
    return event.model_copy(update={"content": event.content + "x" * (size - weight)})


async def published_contents(broker: str, user_id: str) -> list[str]:
    records = await read_all(broker, TOPIC)
    found = [e.data for r in records if (e := envelope_or_none(r.value)) is not None]
    return [d["content"] for d in found if d.get("user_id") == user_id]


def test_the_default_limit_is_well_under_kafkas_one_mebibyte() -> None:
    settings = bus_settings("127.0.0.1:1")
    assert settings.kafka_max_message_bytes == 512 * 1024


async def test_the_largest_allowed_message_is_published_and_one_byte_more_is_refused(
    small: EventPublisher, kafka_broker: str
) -> None:
    user_id = uuid.uuid4().hex
    largest = sized(user_id, LIMIT, small)
    assert small.fits(largest)
    await small.publish(largest)
    too_large = sized(user_id, LIMIT + 1, small)
    assert not small.fits(too_large)
    with pytest.raises(MessageTooLarge, match="exceeds KAFKA_MAX_MESSAGE_BYTES"):
        await small.publish(too_large)
    # Queued in an outbox: refused before anything is stored.
    with pytest.raises(MessageTooLarge):
        outbox_entry(small, too_large)

    contents = await eventually(lambda: published_contents(kafka_broker, user_id), what="it")
    assert contents == [largest.content]


async def test_a_batch_refuses_only_its_oversized_message(
    small: EventPublisher, kafka_broker: str
) -> None:
    user_id = uuid.uuid4().hex
    fine, huge = created(user_id), sized(user_id, LIMIT * 2, small)
    messages = [
        (TOPIC, user_id, small.envelope_for(event)) for event in (fine, huge, created(user_id))
    ]
    outcomes = await small.publish_envelopes(messages)
    assert outcomes[0] is None and outcomes[2] is None
    assert isinstance(outcomes[1], MessageTooLarge)

    async def both() -> list[str]:
        found = await published_contents(kafka_broker, user_id)
        return found if len(found) >= 2 else []

    contents = await eventually(both, what="the two small ones")
    assert huge.content not in contents and len(contents) == 2
