"""Once per period, really (issue 15, item 6): a period is marked done only after its work, a
failed or crashed run is finished by the catch-up run of the same or another replica, and no
user is sent the same period's promotion twice (one conditional write per user and period, its
events' ids derived from the period and the user)."""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import fakeredis
import pytest
from mongomock_motor import AsyncMongoMockClient

from scheduler_service.locks import RedisSlotLock, SlotLock
from scheduler_service.repository import MongoSlotLock, SchedulerRepository
from scheduler_service.service import Promotions
from scheduler_service.settings import SchedulerSettings
from shared.catalog import CatalogUnavailable, shipped_products
from shared.catalog.models import Product
from shared.events import Envelope
from shared.outbox import OUTBOX_FIELD
from shared.publisher import EventPublisher
from tests.fixtures.parts import TEST_JWT_SECRET, eventually

USERS = 5


class Catalog:
    """The shipped catalog, or an outage."""

    def __init__(self) -> None:
        self.down = False

    async def products(self) -> list[Product]:
        if self.down:
            raise CatalogUnavailable()
        return shipped_products()


class Relay:
    """The broker is away: everything stays in the outbox for the relay (which we read)."""

    async def flush_document(self, collection: Any, document_id: Any) -> bool:
        return False


class CrashingRepository(SchedulerRepository):
    """Fails the n-th promotion write of a run (the process dies there)."""

    crash_at: int | None = None

    async def record_promotion(self, *args: Any, **kwargs: Any) -> bool:
        if self.crash_at is not None:
            if self.crash_at == 0:
                self.crash_at = None
                raise ConnectionResetError("the replica died mid-period")
            self.crash_at -= 1
        return await super().record_promotion(*args, **kwargs)


def replica(
    db: Any, lease_seconds: float = 60, redis_server: fakeredis.FakeServer | None = None
) -> tuple[Promotions, CrashingRepository, Catalog]:
    settings = SchedulerSettings(
        _env_file=None,
        jwt_secret=TEST_JWT_SECRET,
        promotion_interval_seconds=300,
        promotion_lease_seconds=lease_seconds,
    )
    repository = CrashingRepository(db)
    catalog = Catalog()
    lock: SlotLock = (
        RedisSlotLock(
            fakeredis.FakeAsyncRedis(server=redis_server),
            settings.promotion_job_name,
            settings.promotion_lock_ttl_seconds,
            lease_seconds,
        )
        if redis_server is not None
        else MongoSlotLock(repository.job_runs, settings.promotion_job_name, lease_seconds)
    )
    job = Promotions(
        settings,
        repository,
        EventPublisher(settings),
        Relay(),  # type: ignore[arg-type]
        catalog,  # type: ignore[arg-type]
        lock,
    )
    return job, repository, catalog


async def subscribed(repository: SchedulerRepository) -> list[str]:
    users = [f"user-{n}-{uuid.uuid4().hex[:6]}" for n in range(USERS)]
    for user in users:
        await repository.subscribe(user, f"{user}@example.com", datetime.now(UTC))
    return users


async def queued_events(repository: SchedulerRepository) -> list[Envelope]:
    documents = await repository.subscriptions.find({}).to_list(None)
    return [
        Envelope.from_bytes(entry["envelope"].encode())
        for document in documents
        for entry in document.get(OUTBOX_FIELD, [])
    ]


def per_user(events: list[Envelope], event_type: str) -> Counter[str]:
    return Counter(e.data["user_id"] for e in events if e.type == event_type)


@pytest.fixture
def db() -> Any:
    return AsyncMongoMockClient(tz_aware=True)[f"test_{uuid.uuid4().hex}"]


@pytest.mark.parametrize("lock_store", ["mongo", "redis"])
async def test_a_crash_mid_period_is_finished_by_another_replica_without_double_sends(
    db: Any, lock_store: str
) -> None:
    server = fakeredis.FakeServer() if lock_store == "redis" else None
    first, repository, _ = replica(db, redis_server=server)
    second, _, _ = replica(db, redis_server=server)
    users = await subscribed(repository)
    now = datetime(2026, 3, 1, 10, 2, tzinfo=UTC)
    repository.crash_at = 2  # two users served, then the replica dies
    with pytest.raises(ConnectionResetError):
        await first.run(now)
    slot = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
    assert await first.lock.unfinished(slot - timedelta(hours=1)) == [slot]
    assert sum(per_user(await queued_events(repository), "PromotionPublished").values()) == 2

    assert await second.catch_up_since(slot - timedelta(hours=1)) == USERS - 2
    assert await second.run(now) == 0, "a done period is not run again"
    assert await first.lock.unfinished(slot - timedelta(hours=1)) == []

    events = await queued_events(repository)
    assert per_user(events, "PromotionPublished") == dict.fromkeys(users, 1)
    assert per_user(events, "NotificationRequested") == dict.fromkeys(users, 1)
    print(f"\n[period after a crash] users={USERS} promotions={len(events) // 2}")


async def test_a_crashed_run_whose_lease_expires_is_taken_over(db: Any) -> None:
    first, repository, _ = replica(db, lease_seconds=0.05)
    second, _, _ = replica(db, lease_seconds=0.05)
    users = await subscribed(repository)
    slot = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
    assert await first.lock.acquire(slot) is not None  # killed before it wrote anything
    assert await second.run_slot(slot) == 0, "a live lease is left alone"
    queued = await eventually(
        lambda: second.run_slot(slot), what="the expired lease taken over by another replica"
    )
    assert queued == len(users)


async def test_a_catalog_outage_leaves_the_period_to_the_catch_up(db: Any) -> None:
    job, repository, catalog = replica(db)
    users = await subscribed(repository)
    catalog.down = True
    now = datetime(2026, 3, 1, 10, 2, tzinfo=UTC)
    with pytest.raises(CatalogUnavailable):
        await job.run(now)
    slot = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
    assert await job.lock.unfinished(slot) == [slot], "the period is not marked done"
    catalog.down = False
    assert await job.catch_up_since(slot) == len(users)


async def test_event_ids_are_the_same_for_a_user_and_period_however_often_it_runs() -> None:
    from scheduler_service import domain

    slot = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
    one = domain.promotion_event_id("promotions", slot, "u1", "PromotionPublished")
    assert one == domain.promotion_event_id("promotions", slot, "u1", "PromotionPublished")
    assert one != domain.promotion_event_id("promotions", slot, "u2", "PromotionPublished")
    assert one != domain.promotion_event_id("promotions", slot, "u1", "NotificationRequested")
    later = slot + timedelta(minutes=5)
    assert one != domain.promotion_event_id("promotions", later, "u1", "PromotionPublished")


async def test_an_old_period_taken_up_late_does_not_promote_again(db: Any) -> None:
    job, repository, _ = replica(db)
    users = await subscribed(repository)
    old = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
    newer = old + timedelta(minutes=5)
    assert await job.run_slot(newer) == len(users)
    assert await job.run_slot(old) == 0, "users served a newer period skip an older one"
