"""A recommendation result is stored before it becomes the user's latest list; when that second
write fails, a redelivery of the history (or the retry pass) finishes it (issue 15, item 6)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from mongomock_motor import AsyncMongoMockClient

from recommendation_service.repository import DONE, RecommendationRepository
from recommendation_service.service import Recommendations
from recommendation_service.settings import RecommendationSettings
from shared.catalog import shipped_products
from shared.catalog.models import Product
from shared.events.models import PurchaseHistoryProvided
from shared.publisher import EventPublisher
from tests.fixtures.parts import TEST_JWT_SECRET


class Catalog:
    async def products(self) -> list[Product]:
        return shipped_products()


class Relay:
    async def flush_document(self, collection: Any, document_id: Any) -> bool:
        return False


class FlakyLatest(RecommendationRepository):
    """The store fails the write of the latest list `failures` times."""

    failures = 0

    async def set_latest(self, *args: Any, **kwargs: Any) -> None:
        if self.failures:
            self.failures -= 1
            raise ConnectionResetError("the store went away after the result was stored")
        await super().set_latest(*args, **kwargs)


def flow() -> tuple[Recommendations, FlakyLatest]:
    settings = RecommendationSettings(
        _env_file=None, jwt_secret=TEST_JWT_SECRET, recommendation_retry_seconds=0.01
    )
    repository = FlakyLatest(AsyncMongoMockClient(tz_aware=True)[f"t_{uuid.uuid4().hex}"])
    publisher = EventPublisher(settings)
    return (
        Recommendations(settings, repository, publisher, Relay(), Catalog()),  # type: ignore[arg-type]
        repository,
    )


def answer(request_id: str, user_id: str) -> PurchaseHistoryProvided:
    return PurchaseHistoryProvided(request_id=request_id, user_id=user_id)


async def test_a_redelivered_history_finishes_a_half_done_result() -> None:
    recommendations, repository = flow()
    request_id, user_id = uuid.uuid4().hex, f"user-{uuid.uuid4().hex}"
    now = datetime.now(UTC)
    await repository.insert_request(
        request_id, user_id, now, [], expires_at=now + timedelta(days=7)
    )
    repository.failures = 1
    with pytest.raises(ConnectionResetError):  # the bus retries the message
        await recommendations.take_history(answer(request_id, user_id))
    stored = await repository.requests.find_one({"_id": request_id})
    assert stored["status"] == DONE and stored["latest_pending"]
    assert await repository.latest(user_id) == []

    await recommendations.take_history(answer(request_id, user_id))  # redelivery
    latest = await repository.latest(user_id)
    assert latest and latest == stored["products"]
    assert "latest_pending" not in await repository.requests.find_one({"_id": request_id})


async def test_the_retry_pass_finishes_a_half_done_result_too() -> None:
    recommendations, repository = flow()
    request_id, user_id = uuid.uuid4().hex, f"user-{uuid.uuid4().hex}"
    now = datetime.now(UTC)
    await repository.insert_request(
        request_id, user_id, now, [], expires_at=now + timedelta(days=7)
    )
    event = answer(request_id, user_id)
    await repository.store_history(
        request_id,
        user_id,
        event.model_dump(mode="python"),
        datetime.now(UTC),
        expires_at=now + timedelta(days=7),
    )
    repository.failures = 1
    with pytest.raises(ConnectionResetError):  # scored by the retry pass, not a handler
        await recommendations.score(request_id)
    assert await repository.latest(user_id) == []
    stored = await repository.requests.find_one({"_id": request_id})
    await repository.requests.update_one(
        {"_id": request_id}, {"$set": {"lease_until": datetime(2020, 1, 1, tzinfo=UTC)}}
    )
    assert await recommendations.retry_due() == 1
    assert await repository.latest(user_id) == stored["products"]
    assert await recommendations.retry_due() == 0, "nothing is left to finish"
