"""`MONGO_URI=memory://` through MongoStore: the indexed store keeps unique indexes enforced,
and a service repository's lookups touch only their documents."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pymongo import ASCENDING
from pymongo.errors import DuplicateKeyError

from devstack.memory_store import IndexedCollectionStore
from notification_service.domain import DeliveryStatus
from notification_service.repository import NotificationRepository
from shared.events import UserPreferencesUpdated
from shared.mongo import MongoStore
from shared.outbox import OUTBOX_FIELD, OutboxRelay, outbox_entry
from shared.publisher import EventPublisher
from shared.settings import ServiceSettings
from tests.fixtures.parts import TEST_JWT_SECRET, TEST_MONGO_URI


@pytest.fixture
def users() -> Any:
    store = MongoStore(TEST_MONGO_URI, f"memory-store-{uuid.uuid4().hex}")
    return store.db["users"]


async def _unique_email(users: Any) -> None:
    await users.create_index([("email", ASCENDING)], unique=True, name="email_unique")


async def test_memory_uri_uses_the_indexed_store(users: Any) -> None:
    assert isinstance(users._store, IndexedCollectionStore)


async def test_a_taken_value_is_refused_on_insert(users: Any) -> None:
    await _unique_email(users)
    await users.insert_one({"_id": "a", "email": "ann@example.com"})
    with pytest.raises(DuplicateKeyError) as refused:
        await users.insert_one({"_id": "b", "email": "ann@example.com"})
    assert refused.value.details is not None
    assert refused.value.details["keyValue"] == {"email": "ann@example.com"}
    assert await users.count_documents({}) == 1
    assert await users.find_one({"_id": "b"}) is None


async def test_an_update_that_takes_a_value_is_refused_and_rolled_back(users: Any) -> None:
    await _unique_email(users)
    await users.insert_one({"_id": "a", "email": "ann@example.com"})
    await users.insert_one({"_id": "b", "email": "bob@example.com"})
    with pytest.raises(DuplicateKeyError):
        await users.update_one({"_id": "b"}, {"$set": {"email": "ann@example.com"}})
    with pytest.raises(DuplicateKeyError):
        await users.find_one_and_update({"_id": "b"}, {"$set": {"email": "ann@example.com"}})
    # Still found under its own value: the rollback re-filed it.
    assert (await users.find_one({"email": "bob@example.com"}))["_id"] == "b"
    assert [d["_id"] for d in await users.find({"email": "ann@example.com"}).to_list(None)] == ["a"]


async def test_a_value_is_free_again_once_its_holder_is_deleted(users: Any) -> None:
    await _unique_email(users)
    await users.insert_one({"_id": "a", "email": "ann@example.com"})
    await users.delete_one({"_id": "a"})
    await users.insert_one({"_id": "b", "email": "ann@example.com"})
    await users.insert_one({"_id": "c", "email": "cat@example.com"})
    with pytest.raises(DuplicateKeyError):  # b holds it now
        await users.update_one({"_id": "c"}, {"$set": {"email": "ann@example.com"}})
    await users.delete_many({"email": {"$in": ["ann@example.com"]}})
    await users.update_one({"_id": "c"}, {"$set": {"email": "ann@example.com"}})
    assert (await users.find_one({"email": "ann@example.com"}))["_id"] == "c"


async def test_a_value_is_free_again_once_its_holder_changed(users: Any) -> None:
    await _unique_email(users)
    await users.insert_one({"_id": "a", "email": "ann@example.com"})
    await users.update_one({"_id": "a"}, {"$set": {"email": "anna@example.com"}})
    await users.insert_one({"_id": "b", "email": "ann@example.com"})
    await users.insert_one({"_id": "c", "email": "cat@example.com"})
    await users.replace_one({"_id": "b"}, {"email": "bea@example.com"})
    await users.update_one({"_id": "c"}, {"$set": {"email": "ann@example.com"}})
    with pytest.raises(DuplicateKeyError):
        await users.insert_one({"_id": "d", "email": "anna@example.com"})
    emails = {d["_id"]: d["email"] for d in await users.find({}).to_list(None)}
    assert emails == {"a": "anna@example.com", "b": "bea@example.com", "c": "ann@example.com"}


async def test_an_upsert_that_takes_a_value_is_refused(users: Any) -> None:
    await _unique_email(users)
    await users.insert_one({"_id": "a", "email": "ann@example.com"})
    with pytest.raises(DuplicateKeyError):
        await users.update_one({"_id": "z"}, {"$set": {"email": "ann@example.com"}}, upsert=True)
    assert await users.find_one({"_id": "z"}) is None


async def test_the_mail_sender_claims_through_the_due_mail_index(
    filter_calls: list[int],
) -> None:
    """NotificationRepository's claim and settle look at the pending mail, not every
    notification stored."""
    store = MongoStore(TEST_MONGO_URI, f"memory-store-{uuid.uuid4().hex}")
    repository = NotificationRepository(store.db)
    await repository.ensure_indexes()
    now = datetime.now(UTC)
    sent = {"status": DeliveryStatus.SENT.value, "next_attempt_at": None}
    await repository.notifications.insert_many(
        {"_id": f"n{i}", "user_id": f"u{i % 50}", "read": False, "delivery": dict(sent)}
        for i in range(2000)
    )
    pending = {"status": DeliveryStatus.PENDING.value, "next_attempt_at": now, "attempts": 0}
    await repository.notifications.insert_one(
        {"_id": "due", "user_id": "u1", "read": False, "delivery": pending}
    )

    filter_calls[0] = 0

    claimed = await repository.claim_due_mail(now, now + timedelta(seconds=30), "lease-1")
    assert claimed is not None and claimed["_id"] == "due"
    assert await repository.mark_sent("due", "lease-1", now)
    assert await repository.claim_due_mail(now, now, "lease-2") is None
    assert filter_calls[0] < 10


async def test_the_outbox_sweep_reads_only_documents_with_pending_events(
    filter_calls: list[int], kafka_broker: str
) -> None:
    publisher = EventPublisher(
        ServiceSettings(
            _env_file=None,
            service_name="sweep-test",
            kafka_broker=kafka_broker,
            jwt_secret=TEST_JWT_SECRET,
        )
    )
    await publisher.start()
    store = MongoStore(TEST_MONGO_URI, f"memory-store-{uuid.uuid4().hex}")
    users = store.db["users"]
    relay = OutboxRelay(publisher, [users], interval_seconds=60)
    await relay.ensure_indexes()
    await users.insert_many({"_id": f"u{i}", OUTBOX_FIELD: []} for i in range(2000))
    event = UserPreferencesUpdated(user_id="u7", preferences=["promotions"])
    await users.update_one({"_id": "u7"}, {"$push": {OUTBOX_FIELD: outbox_entry(publisher, event)}})

    filter_calls[0] = 0
    try:
        assert await relay.relay_once(include_young=True) == 1
        assert await relay.relay_once(include_young=True) == 0
    finally:
        await publisher.stop()
    assert filter_calls[0] < 10
