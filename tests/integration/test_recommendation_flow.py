"""The recommendation flow over the real broker: the recommendation service asks, the user
service's purchase-history handler answers, the service scores the catalog with co-purchases
learned from order.placed, stores the latest list and requests a notification. A catalog
outage defers the scoring until the catalog answers again."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import pytest_asyncio

from devstack.parts import LOOPBACK, free_port
from recommendation_service import main
from recommendation_service.main import create_app
from recommendation_service.service import Recommendations
from recommendation_service.settings import RecommendationSettings
from shared.catalog import CatalogClient
from shared.events import Envelope, OrderPlaced, PurchaseHistoryRequested
from shared.runtime import ServiceRuntime
from shared.times import as_utc
from tests.fixtures.apps import own_consumer_group, running_service, service_settings
from tests.fixtures.parts import (
    envelope_or_none,
    eventually,
    read_all,
    signed_token,
)
from user_service.events import consumer_handlers
from user_service.limits import AuthLimits
from user_service.repository import UserRepository
from user_service.service import Users
from user_service.settings import UserSettings

pytestmark = pytest.mark.integration

RETRY_SECONDS = 0.5
PREPARING = "Recommendations are being prepared; they will arrive as a notification."
# Shipped catalog ids: 1 = a kitchen item; 25 = an electronics item bought with it by others.
BOUGHT, COMPANION = "1", "25"


@dataclass
class Flow:
    client: httpx.AsyncClient
    flow: Recommendations
    users: UserRepository
    runtime: ServiceRuntime
    broker: str


def auth(user_id: str) -> dict[str, str]:
    token = signed_token(user_id, f"{user_id}@example.com", ["customer"])
    return {"Authorization": f"Bearer {token}"}


def line(pid: str, title: str, category: str) -> dict[str, Any]:
    return {"productId": pid, "title": title, "category": category, "price": 10.0}


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def flow(kafka_broker: str) -> AsyncIterator[Flow]:
    settings = service_settings(
        RecommendationSettings,
        kafka_broker,
        mongo_uri="memory://",
        recommendation_retry_seconds=RETRY_SECONDS,
    )
    user_settings = service_settings(UserSettings, kafka_broker, mongo_uri="memory://")
    # The user service's side: only its purchase-history handler, in a group of this test's own.
    runtime = ServiceRuntime(user_settings)
    users = UserRepository(runtime.db)
    limits = AuthLimits.from_settings(user_settings)
    handlers = consumer_handlers(Users(user_settings, runtime, users, limits))
    user_consumer = runtime.consume(
        f"user_service-test-{uuid.uuid4().hex[:8]}",
        {PurchaseHistoryRequested.topic: handlers[PurchaseHistoryRequested.topic]},
    )
    with own_consumer_group(main):
        async with runtime.running(), running_service(create_app, settings) as running:
            app, client = running.app, running.client
            rec_consumer = app.state.runtime.consumers[0]
            await eventually(
                lambda: rec_consumer.assigned() and user_consumer.assigned(),
                timeout=30,
                what="both consumers assigned",
            )
            yield Flow(client, app.state.service, users, runtime, kafka_broker)


async def add_user(flow: Flow, preferences: list[str]) -> str:
    user_id = f"user-{uuid.uuid4().hex}"
    await flow.users.users.insert_one(
        {
            "_id": user_id,
            "name": "Reader",
            "email": f"{user_id}@example.com",
            "preferences": preferences,
        }
    )
    await flow.users.purchases.insert_one(
        {
            "_id": f"order-{uuid.uuid4().hex}",
            "user_id": user_id,
            "products": [line(BOUGHT, "Cast Iron Skillet 26 cm", "kitchen")],
            "purchase_date": datetime.now(UTC) - timedelta(days=2),
            "statuses": ["Placed"],
        }
    )
    return user_id


async def teach_co_purchases(flow: Flow, orders: int) -> None:
    for _ in range(orders):
        await flow.runtime.publisher.publish(
            OrderPlaced.model_validate(
                {
                    "order_id": f"order-{uuid.uuid4().hex}",
                    "user_id": f"other-{uuid.uuid4().hex}",
                    "products": [
                        line(BOUGHT, "Cast Iron Skillet 26 cm", "kitchen"),
                        line(COMPANION, "Bluetooth Bookshelf Speaker", "electronics"),
                    ],
                    "placed_at": datetime.now(UTC),
                }
            )
        )


async def latest(flow: Flow, user_id: str) -> list[dict[str, Any]]:
    response = await flow.client.get("/recommendations", headers=auth(user_id))
    assert response.status_code == 200
    result: list[dict[str, Any]] = response.json()
    return result


async def test_recommendations_use_co_purchases_and_exclude_purchases(flow: Flow) -> None:
    user_id = await add_user(flow, ["order_updates", "recommendations"])
    assert await latest(flow, user_id) == []
    await teach_co_purchases(flow, orders=3)
    await eventually(
        lambda: flow.flow.repository.co_counts([BOUGHT]),
        what="co-purchases learned",
    )

    response = await flow.client.post("/recommendations/requests", headers=auth(user_id))
    assert response.status_code == 202
    assert response.json() == {"message": PREPARING}

    products = await eventually(lambda: latest(flow, user_id), what="recommendations stored")
    ids = [p["productId"] for p in products]
    assert len(ids) == 5
    assert BOUGHT not in ids
    assert ids[0] == COMPANION
    assert set(products[0]) == {"productId", "title", "category", "price"}

    async def notification() -> list[Envelope]:
        records = await read_all(flow.broker, "notification.requested")
        envelopes = [Envelope.from_bytes(r.value) for r in records]
        return [e for e in envelopes if e.data["user_id"] == user_id]

    [requested] = await eventually(notification, what="the recommendation notification")
    assert requested.data["type"] == "recommendation"
    assert requested.data["send_email"] is True
    assert requested.data["email"] == f"{user_id}@example.com"
    assert products[0]["title"] in requested.data["content"]


async def test_recommendations_need_a_token(flow: Flow) -> None:
    before = await flow.flow.repository.requests.count_documents({})
    for method, path in (("GET", "/recommendations"), ("POST", "/recommendations/requests")):
        response = await flow.client.request(method, path)
        assert response.status_code == 401, path
        assert response.json()["error"]["code"] == "UNAUTHENTICATED", path
    assert await flow.flow.repository.requests.count_documents({}) == before


async def test_a_catalog_outage_defers_and_retries(flow: Flow) -> None:
    user_id = await add_user(flow, ["order_updates"])
    working = flow.flow.catalog
    attempts: list[httpx.Request] = []

    def refuse(request: httpx.Request) -> httpx.Response:
        attempts.append(request)
        raise httpx.ConnectError("catalog down", request=request)

    flow.flow.catalog = CatalogClient(
        f"http://{LOOPBACK}:{free_port()}",
        attempts=1,
        cache_ttl_seconds=0,
        transport=httpx.MockTransport(refuse),
    )
    try:
        response = await flow.client.post("/recommendations/requests", headers=auth(user_id))
        assert response.status_code == 202

        async def deferred() -> bool:
            doc = await flow.flow.repository.requests.find_one(
                {"user_id": user_id, "status": "history_received"}
            )
            return doc is not None and bool(attempts)

        await eventually(deferred, what="a scoring attempt while the catalog is down")
        assert await latest(flow, user_id) == []
    finally:
        await flow.flow.catalog.aclose()
        flow.flow.catalog = working
    products = await eventually(lambda: latest(flow, user_id), what="the retried recommendation")
    assert BOUGHT not in [p["productId"] for p in products]


async def test_a_request_asks_for_a_bounded_window_and_expires(flow: Flow) -> None:
    user_id = await add_user(flow, ["order_updates"])
    response = await flow.client.post("/recommendations/requests", headers=auth(user_id))
    assert response.status_code == 202

    async def asked() -> list[Envelope]:
        records = await read_all(flow.broker, PurchaseHistoryRequested.topic)
        found = [e for r in records if (e := envelope_or_none(r.value)) is not None]
        return [e for e in found if e.data.get("user_id") == user_id]

    [request] = await eventually(asked, what="the history request")
    assert request.data["max_orders"] == flow.flow.settings.recommendation_history_orders == 20
    doc = await flow.flow.repository.requests.find_one({"user_id": user_id})
    assert doc is not None
    lifetime = as_utc(doc["expires_at"]) - as_utc(doc["created_at"])
    assert lifetime == timedelta(seconds=flow.flow.settings.recommendation_request_ttl_seconds)
    indexes = await flow.flow.repository.requests.index_information()
    assert indexes["expire_at"]["expireAfterSeconds"] == 0
    assert indexes["expire_at"]["key"] == [("expires_at", 1)]
