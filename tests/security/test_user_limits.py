"""Per-user abuse limits at the gateway (issue 13): placeOrder and productRecommendation are
counted per user in Redis, each alias a call, and answer RATE_LIMITED over their limit; a user
holds at most WEBSOCKET_MAX_CONNECTIONS_PER_USER subscription connections, one more is closed
with 4429 "RATE_LIMITED: ...", and a closed one gives its slot back."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import Any

import httpx
import pytest
import pytest_asyncio
import websockets
from fastapi import FastAPI

from graphql_gateway.settings import GatewaySettings
from tests.security.conftest import (
    Account,
    World,
    gateway_settings,
    register,
    serve_gateway,
    unique_email,
)

pytestmark = pytest.mark.integration

ORDERS_PER_MINUTE = 3
RECOMMENDATIONS_PER_MINUTE = 2
CONNECTIONS_PER_USER = 2
WS_PROTOCOL = "graphql-transport-ws"
WS_TOO_MANY = 4429
WS_TIMEOUT_SECONDS = 10.0
PRODUCT = '{productId: "5", title: "Kettle", category: "home"}'


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def limited_gateway(
    world: World, redis_url: str, kafka_broker: str
) -> AsyncIterator[FastAPI]:
    """A gateway of this module's own, with small limits, in front of the world's services."""
    settings = gateway_settings(
        redis_url,
        kafka_broker,
        place_order_limit_per_user=f"{ORDERS_PER_MINUTE}/minute",
        recommendation_limit_per_user=f"{RECOMMENDATIONS_PER_MINUTE}/minute",
        websocket_max_connections_per_user=CONNECTIONS_PER_USER,
    )
    async with serve_gateway(settings, world.apps) as app:
        yield app


def url_of(app: FastAPI, scheme: str = "http") -> str:
    settings: GatewaySettings = app.state.settings
    return f"{scheme}://{settings.host}:{settings.port}/graphql"


async def new_account(world: World) -> Account:
    return await register(world.clients["user_service"], unique_email("limits"))


async def post(app: FastAPI, account: Account, query: str) -> dict[str, Any]:
    async with httpx.AsyncClient() as client:
        response = await client.post(
            url_of(app),
            json={"query": query},
            headers={"Authorization": f"Bearer {account.token}"},
        )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def codes_by_alias(body: dict[str, Any]) -> dict[str, str]:
    return {e["path"][0]: e["extensions"]["code"] for e in body.get("errors", [])}


def aliased(field: str, count: int, selection: str = "") -> str:
    return " ".join(f"a{n}: {field}{selection}" for n in range(count))


async def test_aliases_of_product_recommendation_count_one_each(
    world: World, limited_gateway: FastAPI
) -> None:
    account = await new_account(world)
    budget = "{ " + aliased("productRecommendation", RECOMMENDATIONS_PER_MINUTE) + " }"
    assert "errors" not in await post(limited_gateway, account, budget)
    # The aliases used the whole budget: one more call is refused.
    refused = await post(limited_gateway, account, "{ productRecommendation }")
    assert codes_by_alias(refused) == {"productRecommendation": "RATE_LIMITED"}
    assert refused["errors"][0]["message"] == "Too many recommendation requests; try again later."
    # Another user's budget is their own; past it, aliases are refused in the same document.
    other = await new_account(world)
    over = await post(limited_gateway, other, "{ " + aliased("productRecommendation", 4) + " }")
    assert over["data"] is None
    assert set(codes_by_alias(over).values()) == {"RATE_LIMITED"}


async def test_place_order_is_limited_per_user_and_the_refused_ones_are_not_placed(
    world: World, limited_gateway: FastAPI
) -> None:
    account = await new_account(world)
    place = "mutation { " + aliased("placeOrder", 4, f"(products: [{PRODUCT}]) {{ id }}") + " }"
    body = await post(limited_gateway, account, place)
    assert codes_by_alias(body) == {"a3": "RATE_LIMITED"}
    assert body["errors"][0]["message"] == "Too many orders; try again later."
    assert len((await post(limited_gateway, account, "{ orders { id } }"))["data"]["orders"]) == 3
    again = await post(
        limited_gateway, account, f"mutation {{ placeOrder(products: [{PRODUCT}]) {{ id }} }}"
    )
    assert codes_by_alias(again) == {"placeOrder": "RATE_LIMITED"}


async def open_subscription_connection(app: FastAPI, account: Account) -> Any:
    connection = await websockets.connect(url_of(app, "ws"), subprotocols=[WS_PROTOCOL])
    payload = {"Authorization": f"Bearer {account.token}"}
    await connection.send(json.dumps({"type": "connection_init", "payload": payload}))
    return connection


async def acked(connection: Any) -> bool:
    try:
        message = json.loads(await asyncio.wait_for(connection.recv(), WS_TIMEOUT_SECONDS))
    except websockets.ConnectionClosed:
        return False
    return bool(message["type"] == "connection_ack")


async def test_websocket_connections_per_user_are_capped(
    world: World, limited_gateway: FastAPI
) -> None:
    account = await new_account(world)
    slots = limited_gateway.state.gateway.connections
    async with AsyncExitStack() as stack:
        held = []
        for _ in range(CONNECTIONS_PER_USER):
            connection = await open_subscription_connection(limited_gateway, account)
            stack.push_async_callback(connection.close)
            assert await acked(connection)
            held.append(connection)
        assert slots.open_for(account.user_id) == CONNECTIONS_PER_USER

        one_more = await open_subscription_connection(limited_gateway, account)
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await asyncio.wait_for(one_more.recv(), WS_TIMEOUT_SECONDS)
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == WS_TOO_MANY
        assert closed.value.rcvd.reason.startswith("RATE_LIMITED: ")

        # Someone else is not held back.
        other = await open_subscription_connection(limited_gateway, await new_account(world))
        stack.push_async_callback(other.close)
        assert await acked(other)

        # A closed connection gives its slot back.
        await held[0].close()
        deadline = asyncio.get_running_loop().time() + WS_TIMEOUT_SECONDS
        while slots.open_for(account.user_id) >= CONNECTIONS_PER_USER:
            assert asyncio.get_running_loop().time() < deadline, "the slot was not given back"
            await asyncio.sleep(0.05)
        again = await open_subscription_connection(limited_gateway, account)
        stack.push_async_callback(again.close)
        assert await acked(again)
    assert slots.open_for(account.user_id) <= CONNECTIONS_PER_USER


def test_the_benchmark_raises_the_per_user_limits_far_above_the_defaults() -> None:
    from bench.run import BENCH_USER_LIMITS
    from shared.ratelimit import parse_limit

    fields = GatewaySettings.model_fields
    for name, value in BENCH_USER_LIMITS.items():
        default = parse_limit(fields[name.lower()].default)
        assert parse_limit(value).amount >= 1000 * default.amount, name
