"""Recommendations end to end, through GraphQL only: a customer who opted in to
recommendation emails buys a catalog product, asks for recommendations, and gets a list that
excludes the purchase, an in-app notification and an email."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.e2e.test_welcome_flow import PASSWORD, data_of, emails_to, error_code, graphql
from tests.e2e.test_welcome_flow import unique_email as new_email
from tests.fixtures.fleet import RunningFleet
from tests.fixtures.parts import eventually

pytestmark = pytest.mark.e2e

FLOW_TIMEOUT_SECONDS = 30.0
PREPARING = "Recommendations are being prepared; they will arrive as a notification."
REGISTER = """
mutation Register($name: String!, $email: String!, $password: String!, $prefs: [Preference!]) {
  registerUser(name: $name, email: $email, password: $password, preferences: $prefs) {
    token user { id } } }
"""
PLACE = """
mutation Place($products: [ProductInput!]!) { placeOrder(products: $products) { id } }
"""
HISTORY = "query { getUserDetails { purchase_history { orderId } } }"
START = "query { productRecommendation }"
LATEST = "query { recommendations { productId title category price } }"
NOTIFICATIONS = "query { getUserNotifications(unreadOnly: false) { type content } }"
# Product 1 of the shipped catalog.
SKILLET = {"productId": "1", "title": "Cast Iron Skillet 26 cm", "category": "kitchen"}


@pytest.fixture
async def client(fleet: RunningFleet) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=10) as http:
        yield http


async def test_recommendations_arrive_and_exclude_purchases(
    client: httpx.AsyncClient, fleet: RunningFleet
) -> None:
    address = new_email()
    registered = data_of(
        await graphql(
            client,
            fleet,
            REGISTER,
            {"name": "Rita", "email": address, "password": PASSWORD, "prefs": ["recommendations"]},
        )
    )["registerUser"]
    token = registered["token"]
    assert data_of(await graphql(client, fleet, LATEST, token=token))["recommendations"] == []

    data_of(await graphql(client, fleet, PLACE, {"products": [SKILLET]}, token=token))

    async def in_history() -> bool:
        body = await graphql(client, fleet, HISTORY, token=token)
        return bool(data_of(body)["getUserDetails"]["purchase_history"])

    await eventually(in_history, timeout=FLOW_TIMEOUT_SECONDS, what="the order in the history")

    started = data_of(await graphql(client, fleet, START, token=token))
    assert started["productRecommendation"] == PREPARING

    async def recommended() -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = data_of(await graphql(client, fleet, LATEST, token=token))[
            "recommendations"
        ]
        return result

    products = await eventually(recommended, timeout=FLOW_TIMEOUT_SECONDS, what="recommendations")
    assert len(products) == 5
    assert SKILLET["productId"] not in [p["productId"] for p in products]
    assert SKILLET["title"] not in [p["title"] for p in products]

    async def notified() -> list[dict[str, Any]]:
        body = await graphql(client, fleet, NOTIFICATIONS, token=token)
        return [n for n in data_of(body)["getUserNotifications"] if n["type"] == "recommendation"]

    [notification] = await eventually(
        notified, timeout=FLOW_TIMEOUT_SECONDS, what="the recommendation notification"
    )
    assert products[0]["title"] in notification["content"]

    def mailed() -> list[Any]:
        return [
            m
            for m in emails_to(fleet.mail_dir, address)
            if products[0]["title"] in m.get_body(preferencelist=("plain",)).get_content()
        ]

    await eventually(mailed, timeout=FLOW_TIMEOUT_SECONDS, what="the recommendation email")


async def test_recommendations_need_a_token(client: httpx.AsyncClient, fleet: RunningFleet) -> None:
    assert error_code(await graphql(client, fleet, LATEST)) == "UNAUTHENTICATED"
    assert error_code(await graphql(client, fleet, START)) == "UNAUTHENTICATED"
