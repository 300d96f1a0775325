"""The scheduler service against the real broker and Redis: subscriptions over HTTP, and two
instances (each with its own APScheduler) sharing Redis fire each period exactly once."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from datetime import UTC, datetime

import httpx
import pytest
import pytest_asyncio
import redis.asyncio as redis
from fastapi import FastAPI

from scheduler_service import main
from scheduler_service.main import create_app
from scheduler_service.settings import SchedulerSettings
from shared.events import Envelope, OrderPlaced, UserRegistered
from tests.fixtures.apps import asgi_client, own_consumer_group, running_service, service_settings
from tests.fixtures.parts import eventually, read_all, signed_token

pytestmark = pytest.mark.integration

INTERVAL_SECONDS = 1.5
PERIODS = 3


def settings_for(broker: str, redis_url: str, job_name: str) -> SchedulerSettings:
    return service_settings(
        SchedulerSettings,
        broker,
        mongo_uri="memory://",
        redis_url=redis_url,
        promotion_interval_seconds=INTERVAL_SECONDS,
        promotion_job_name=job_name,
    )


def token_for(user_id: str, email: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {signed_token(user_id, email, ['customer'])}"}


@pytest_asyncio.fixture(loop_scope="session")
async def two_instances(
    kafka_broker: str, redis_url: str
) -> AsyncIterator[tuple[list[httpx.AsyncClient], list[FastAPI], str]]:
    job_name = f"promotions-{uuid.uuid4().hex[:8]}"
    async with AsyncExitStack() as stack:
        stack.enter_context(own_consumer_group(main))
        clients, apps = [], []
        for _ in range(2):
            running = await stack.enter_async_context(
                running_service(create_app, settings_for(kafka_broker, redis_url, job_name))
            )
            clients.append(running.client)
            apps.append(running.app)
        yield clients, apps, job_name


async def promotions_for(broker: str, user_id: str) -> list[Envelope]:
    envelopes = [
        Envelope.from_bytes(r.value) for r in await read_all(broker, "promotion.published")
    ]
    return [e for e in envelopes if e.data["user_id"] == user_id]


async def test_two_instances_fire_each_period_once_and_stop_after_cancel(
    two_instances: tuple[list[httpx.AsyncClient], list[FastAPI], str],
    kafka_broker: str,
    redis_url: str,
) -> None:
    clients, _, job_name = two_instances
    user_id = f"user-{uuid.uuid4().hex}"
    headers = token_for(user_id, f"{user_id}@example.com")
    # memory:// stores are per process: subscribe on both, as a shared MongoDB would hold it.
    for client in clients:
        for _ in range(2):  # twice = one subscription
            response = await client.put("/subscriptions/me", headers=headers)
            assert response.status_code == 200
            assert response.json() == {"message": "You are subscribed to promotions."}

    async def enough() -> list[Envelope]:
        found = await promotions_for(kafka_broker, user_id)
        return found if len(found) >= PERIODS else []

    found = await eventually(enough, timeout=30, what=f"{PERIODS} promotion periods")
    slots = Counter(e.data["slot"] for e in found)
    assert all(count == 1 for count in slots.values()), slots

    notifications = [
        Envelope.from_bytes(r.value) for r in await read_all(kafka_broker, "notification.requested")
    ]
    mine = [e for e in notifications if e.data["user_id"] == user_id]
    assert len(mine) >= PERIODS
    assert all(e.data["type"] == "promotion" for e in mine)
    assert all("/unsubscribe/" in (e.data["unsubscribe_url"] or "") for e in mine)
    assert all(e.data["send_email"] is False for e in mine)  # no promotions preference known

    for client in clients:
        response = await client.delete("/subscriptions/me", headers=headers)
        assert response.json() == {"message": "You are unsubscribed from promotions."}
    after = {e.data["slot"] for e in await promotions_for(kafka_broker, user_id)}

    store = redis.Redis.from_url(redis_url)
    try:
        before_keys = {k async for k in store.scan_iter(f"job-run:{job_name}:*")}

        async def two_more_firings() -> bool:
            keys = {k async for k in store.scan_iter(f"job-run:{job_name}:*")}
            return len(keys - before_keys) >= 2

        await eventually(two_more_firings, timeout=20, what="two firings after the cancel")
    finally:
        await store.aclose()
    final = {e.data["slot"] for e in await promotions_for(kafka_broker, user_id)}
    assert final == after


async def test_subscribing_needs_a_token(one_instance: FastAPI) -> None:
    async with asgi_client(one_instance, "scheduler") as client:
        response = await client.put("/subscriptions/me")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "UNAUTHENTICATED"


@pytest_asyncio.fixture(loop_scope="session")
async def one_instance(kafka_broker: str) -> AsyncIterator[FastAPI]:
    """One instance without Redis: firing claims go to its `job_runs` collection."""
    settings = settings_for(kafka_broker, "", f"promotions-{uuid.uuid4().hex[:8]}")
    settings = settings.model_copy(update={"redis_url": None})
    with own_consumer_group(main):
        async with running_service(create_app, settings) as running:
            yield running.app


async def test_preferences_decide_the_email_and_products_rotate(
    one_instance: FastAPI, kafka_broker: str
) -> None:
    app = one_instance
    consumer = app.state.runtime.consumers[0]
    await eventually(consumer.assigned, timeout=30, what="the scheduler consumer assigned")
    user_id = f"user-{uuid.uuid4().hex}"
    email = f"{user_id}@example.com"
    await app.state.runtime.publisher.publish(
        UserRegistered(user_id=user_id, name="P", email=email, preferences=["promotions"])
    )
    bought = "1"
    await app.state.runtime.publisher.publish(
        OrderPlaced.model_validate(
            {
                "order_id": f"order-{uuid.uuid4().hex}",
                "user_id": user_id,
                "products": [{"productId": bought, "title": "t", "category": "kitchen"}],
                "placed_at": datetime.now(UTC),
            }
        )
    )
    repository = app.state.service.repository

    async def known() -> bool:
        prefs = await repository.preferences_of([user_id])
        return prefs.get(user_id) == ["promotions"] and bool(
            await repository.purchases_of([user_id])
        )

    await eventually(known, what="the preferences and purchases copied")
    async with asgi_client(app, "scheduler") as client:
        response = await client.put("/subscriptions/me", headers=token_for(user_id, email))
        assert response.status_code == 200

        async def three() -> list[Envelope]:
            found = await promotions_for(kafka_broker, user_id)
            return found if len(found) >= PERIODS else []

        found = await eventually(three, timeout=30, what="three promotions")
        product_ids = [e.data["product"]["productId"] for e in found]
        assert len(set(product_ids)) == len(product_ids)
        assert bought not in product_ids
        assert await repository.job_runs.count_documents({}) >= PERIODS

        records = await read_all(kafka_broker, "notification.requested")
        mine = [
            e
            for e in (Envelope.from_bytes(r.value) for r in records)
            if e.data["user_id"] == user_id
        ]
        assert mine and all(e.data["send_email"] is True for e in mine)
        assert all(e.data["email"] == email for e in mine)

        # The one-click link in those emails unsubscribes without a token.
        path = mine[0].data["unsubscribe_url"].split("/unsubscribe/")[1]
        response = await client.post(f"/subscriptions/unsubscribe/{path}")
        assert response.json() == {"message": "You are unsubscribed from promotions."}
        assert await repository.subscription(user_id) is None
        response = await client.post("/subscriptions/unsubscribe/forged.token")
        assert response.status_code == 404
