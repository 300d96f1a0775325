"""The outbox: an event written with its document is published by the relay, exactly once
removed, and kept while the broker cannot take it."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from prometheus_client import REGISTRY

from devstack.parts import free_port
from shared.events import Envelope, UserPreferencesUpdated
from shared.mongo import MongoStore
from shared.outbox import OUTBOX_FIELD, UNPUBLISHABLE_FIELD, OutboxRelay, outbox_entry
from shared.publisher import EventPublisher
from shared.settings import ServiceSettings
from tests.fixtures.bus import bus_settings
from tests.fixtures.parts import TEST_MONGO_URI, read_all


def settings_for(broker: str) -> ServiceSettings:
    return bus_settings(
        broker,
        service_name="outbox-test",
        kafka_request_timeout_ms=1000,
        kafka_startup_timeout_seconds=1,
        kafka_publish_timeout_seconds=2,
    )


@pytest.fixture
async def publisher_and_users(kafka_broker: str) -> AsyncIterator[tuple[EventPublisher, Any]]:
    """A started publisher (stopped after the test) and a fresh `users` collection."""
    publisher = EventPublisher(settings_for(kafka_broker))
    await publisher.start()
    store = MongoStore(TEST_MONGO_URI, f"outbox-{uuid.uuid4().hex}")
    try:
        yield publisher, store.db["users"]
    finally:
        await publisher.stop()


def preferences_entry(publisher: EventPublisher, user_id: str) -> dict[str, Any]:
    """An outbox entry announcing a preferences change of the user."""
    return outbox_entry(publisher, UserPreferencesUpdated(user_id=user_id, preferences=[]))


async def test_relay_publishes_pending_events_and_clears_them(kafka_broker: str) -> None:
    publisher = EventPublisher(settings_for(kafka_broker))
    await publisher.start()
    store = MongoStore(TEST_MONGO_URI, f"outbox-{uuid.uuid4().hex}")
    users = store.db["users"]
    user_id = uuid.uuid4().hex
    event = UserPreferencesUpdated(user_id=user_id, preferences=["promotions"])
    entry = outbox_entry(publisher, event)
    await users.insert_one({"_id": user_id, OUTBOX_FIELD: [entry]})
    relay = OutboxRelay(publisher, [users], interval_seconds=60)
    try:
        assert await relay.relay_once() == 1
        assert await relay.relay_once() == 0
    finally:
        await publisher.stop()

    document = await users.find_one({"_id": user_id})
    assert document[OUTBOX_FIELD] == []
    records = [r for r in await read_all(kafka_broker, event.topic) if r.key == user_id.encode()]
    assert len(records) == 1
    assert str(Envelope.from_bytes(records[0].value).id) == entry["id"]


async def test_pending_events_stay_while_the_broker_is_unreachable(kafka_broker: str) -> None:
    unreachable = EventPublisher(settings_for(f"127.0.0.1:{free_port()}"))
    store = MongoStore(TEST_MONGO_URI, f"outbox-{uuid.uuid4().hex}")
    users = store.db["users"]
    user_id = uuid.uuid4().hex
    entry = outbox_entry(unreachable, UserPreferencesUpdated(user_id=user_id, preferences=[]))
    await users.insert_one({"_id": user_id, OUTBOX_FIELD: [entry]})

    assert not await OutboxRelay(unreachable, [users], 60).flush_document(users, user_id)
    assert (await users.find_one({"_id": user_id}))[OUTBOX_FIELD] == [entry]

    reachable = EventPublisher(settings_for(kafka_broker))
    await reachable.start()
    try:
        assert await OutboxRelay(reachable, [users], 60).flush_document(users, user_id)
    finally:
        await reachable.stop()
    assert (await users.find_one({"_id": user_id}))[OUTBOX_FIELD] == []


async def test_a_failed_flush_is_retried_by_the_relay_between_sweeps(kafka_broker: str) -> None:
    publisher = EventPublisher(settings_for(kafka_broker))
    store = MongoStore(TEST_MONGO_URI, f"outbox-{uuid.uuid4().hex}")
    users = store.db["users"]
    # Swept at its first pass only; the flush timeout makes every entry here "young".
    relay = OutboxRelay(
        publisher, [users], 60, flush_timeout_seconds=600, sweep_interval_seconds=3600
    )
    assert await relay.relay_once() == 0  # the first sweep, over an empty collection

    user_id = uuid.uuid4().hex
    entry = outbox_entry(publisher, UserPreferencesUpdated(user_id=user_id, preferences=[]))
    await users.insert_one({"_id": user_id, OUTBOX_FIELD: [entry]})
    # Not started: the publish fails at once and the entry stays.
    assert not await relay.flush_entries(users, {user_id: [entry]})
    assert (await users.find_one({"_id": user_id}))[OUTBOX_FIELD] == [entry]

    await publisher.start()
    try:
        # No sweep is due, and the entry is young: only the remembered failure brings it.
        assert await relay.relay_once() == 1
        assert await relay.relay_once() == 0
    finally:
        await publisher.stop()
    assert (await users.find_one({"_id": user_id}))[OUTBOX_FIELD] == []
    records = [r for r in await read_all(kafka_broker, entry["topic"]) if r.key == user_id.encode()]
    assert [str(Envelope.from_bytes(r.value).id) for r in records] == [entry["id"]]


async def test_a_page_of_entries_not_due_does_not_hide_the_ones_behind_it(
    publisher_and_users: tuple[EventPublisher, Any],
) -> None:
    publisher, users = publisher_and_users

    def entry_for(user_id: str) -> dict[str, Any]:
        return preferences_entry(publisher, user_id)

    # More than a page of entries a writer is still flushing (young), sorted first...
    await users.insert_many(
        {"_id": f"a{n:04d}", OUTBOX_FIELD: [entry_for(f"a{n:04d}")]} for n in range(600)
    )
    # ...and behind them one a crashed writer left long ago.
    left_behind = {**entry_for("z-left-behind"), "queued_at": 0.0}
    await users.insert_one({"_id": "z-left-behind", OUTBOX_FIELD: [left_behind]})
    relay = OutboxRelay(publisher, [users], interval_seconds=60, flush_timeout_seconds=60)
    await relay.ensure_indexes()
    assert await relay.relay_once() == 1
    assert (await users.find_one({"_id": "z-left-behind"}))[OUTBOX_FIELD] == []
    assert len((await users.find_one({"_id": "a0000"}))[OUTBOX_FIELD]) == 1


async def test_an_unpublishable_entry_is_set_aside_and_not_retried(kafka_broker: str) -> None:
    publisher = EventPublisher(settings_for(kafka_broker))
    await publisher.start()
    store = MongoStore(TEST_MONGO_URI, f"outbox-{uuid.uuid4().hex}")
    users = store.db["users"]
    user_id = uuid.uuid4().hex
    good = outbox_entry(publisher, UserPreferencesUpdated(user_id=user_id, preferences=[]))
    broken = {"id": "broken-1", "topic": "user.preferences-updated", "envelope": "not json"}
    await users.insert_one({"_id": user_id, OUTBOX_FIELD: [broken, good]})
    relay = OutboxRelay(publisher, [users], interval_seconds=60)
    try:
        assert await relay.relay_once(include_young=True) == 1
        assert await relay.relay_once(include_young=True) == 0
    finally:
        await publisher.stop()
    document = await users.find_one({"_id": user_id})
    assert document[OUTBOX_FIELD] == []
    assert document[UNPUBLISHABLE_FIELD] == [broken]


async def test_relay_exports_the_pending_count_and_the_oldest_age() -> None:
    store = MongoStore(TEST_MONGO_URI, f"outbox-{uuid.uuid4().hex}")
    users = store.db["users"]
    service = f"outbox-metrics-{uuid.uuid4().hex[:6]}"
    relay = OutboxRelay(EventPublisher(settings_for("127.0.0.1:1")), [users], 60, service=service)
    labels = {"service": service, "collection": "users"}
    try:
        await users.create_index([(f"{OUTBOX_FIELD}.0", 1)], sparse=True)
        await relay.measure()
        assert REGISTRY.get_sample_value("outbox_pending_documents", labels) == 0
        assert REGISTRY.get_sample_value("outbox_oldest_pending_age_seconds", labels) == 0
        now = time.time()
        await users.insert_many(
            [
                {"_id": "young", OUTBOX_FIELD: [{"id": "a", "queued_at": now - 5}]},
                {"_id": "old", OUTBOX_FIELD: [{"id": "b", "queued_at": now - 90}]},
                {"_id": "done", OUTBOX_FIELD: []},
            ]
        )
        await relay.measure()
        assert REGISTRY.get_sample_value("outbox_pending_documents", labels) == 2
        age = REGISTRY.get_sample_value("outbox_oldest_pending_age_seconds", labels)
        assert age is not None and 90 <= age < 120
    finally:
        await store.close()


async def test_entries_in_hand_are_published_as_made_without_parsing_them_back(
    kafka_broker: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    publisher = EventPublisher(settings_for(kafka_broker))
    await publisher.start()
    store = MongoStore(TEST_MONGO_URI, f"outbox-{uuid.uuid4().hex}")
    users = store.db["users"]
    user_id = uuid.uuid4().hex
    entry = outbox_entry(publisher, UserPreferencesUpdated(user_id=user_id, preferences=[]))
    await users.insert_one({"_id": user_id, OUTBOX_FIELD: [entry]})

    def parsed_back(*_: object, **__: object) -> Envelope:
        raise AssertionError("an entry in hand was parsed back")

    monkeypatch.setattr(Envelope, "model_validate_json", parsed_back)
    try:
        assert await OutboxRelay(publisher, [users], 60).flush_entries(users, {user_id: [entry]})
    finally:
        await publisher.stop()
    assert (await users.find_one({"_id": user_id}))[OUTBOX_FIELD] == []
    records = [r for r in await read_all(kafka_broker, entry["topic"]) if r.key == user_id.encode()]
    assert [r.value for r in records] == [entry["envelope"].encode()]


async def test_a_flush_pulls_only_the_entries_it_published_from_each_document(
    publisher_and_users: tuple[EventPublisher, Any],
) -> None:
    publisher, users = publisher_and_users
    first, second = uuid.uuid4().hex, uuid.uuid4().hex
    published_first, held_back, published_second = (
        preferences_entry(publisher, first),
        preferences_entry(publisher, first),
        preferences_entry(publisher, second),
    )
    await users.insert_many(
        [
            {"_id": first, OUTBOX_FIELD: [published_first, held_back]},
            {"_id": second, OUTBOX_FIELD: [published_second]},
        ]
    )
    relay = OutboxRelay(publisher, [users], interval_seconds=60)
    await relay.flush_entries(users, {first: [published_first], second: [published_second]})

    assert (await users.find_one({"_id": first}))[OUTBOX_FIELD] == [held_back]
    assert (await users.find_one({"_id": second}))[OUTBOX_FIELD] == []
