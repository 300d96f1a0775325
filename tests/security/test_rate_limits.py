"""Login and registration rate limits (Redis, per email and per client address), the client
address taken from X-Forwarded-For only when a trusted proxy sent it, and the gateway sending
the client's address on."""

from __future__ import annotations

import random
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import pytest_asyncio
from fastapi import FastAPI
from structlog.testing import capture_logs

import user_service.main as user_main
from graphql_gateway.clients import ServiceClient, UserClient
from graphql_gateway.schema.context import Gateway
from shared.ratelimit import RateLimiter, Rule, parse_limit
from tests.fixtures.apps import asgi_client, own_consumer_group, running_service, service_settings
from tests.security.conftest import (
    PASSWORD,
    gateway_settings,
    running_gateway,
    send_users_to,
    unique_email,
)
from user_service.settings import UserSettings

pytestmark = pytest.mark.integration

LOGIN_PER_EMAIL = 3
LOGIN_PER_ADDRESS = 5
REGISTER_PER_EMAIL = 2
REGISTER_PER_ADDRESS = 4
GATEWAY_PEER = "127.0.0.1"  # the ASGI transport's client: a trusted proxy by default
RATE_LIMITED = {"code": "RATE_LIMITED", "message": "Too many login attempts; try again later."}


def unique_address() -> str:
    """A client address no other test uses (TEST-NET-2 and -3 ranges)."""
    return f"198.{random.choice((51, 18))}.{random.randrange(256)}.{random.randrange(1, 255)}"


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def user_app(kafka_broker: str, redis_url: str) -> AsyncIterator[FastAPI]:
    settings = service_settings(
        UserSettings,
        kafka_broker,
        service_name=f"user_service_rl_{uuid.uuid4().hex[:8]}",  # its own Redis key prefix
        redis_url=redis_url,
        login_limit_per_email=f"{LOGIN_PER_EMAIL}/minute",
        login_limit_per_address=f"{LOGIN_PER_ADDRESS}/minute",
        register_limit_per_email=f"{REGISTER_PER_EMAIL}/minute",
        register_limit_per_address=f"{REGISTER_PER_ADDRESS}/minute",
    )
    with own_consumer_group(user_main, "rl"):
        async with running_service(user_main.create_app, settings) as running:
            yield running.app


def client_for(app: FastAPI, peer: str = GATEWAY_PEER) -> httpx.AsyncClient:
    return asgi_client(app, "user-service", client=(peer, 40000))


async def register(
    client: httpx.AsyncClient, email: str, address: str | None = None
) -> httpx.Response:
    headers = {"x-forwarded-for": address} if address else {}
    body = {"name": "Rate Tester", "email": email, "password": PASSWORD}
    return await client.post("/users", json=body, headers=headers)


async def login(
    client: httpx.AsyncClient, email: str, password: str, address: str
) -> httpx.Response:
    return await client.post(
        "/auth/login",
        json={"email": email, "password": password},
        headers={"x-forwarded-for": address},
    )


async def test_logins_per_email_are_limited_even_with_the_right_password(
    user_app: FastAPI,
) -> None:
    email = unique_email("rl")
    async with client_for(user_app) as client:
        assert (await register(client, email, unique_address())).status_code == 201
        # Each attempt from a new address: only the per-email count can stop them.
        for _ in range(LOGIN_PER_EMAIL):
            wrong = await login(client, email, PASSWORD + "!", unique_address())
            assert wrong.status_code == 401, wrong.text
        refused = await login(client, email.upper(), PASSWORD, unique_address())
        assert refused.status_code == 429, refused.text
        assert refused.json() == {"error": RATE_LIMITED}
        # Another account is not affected.
        other = unique_email("rl")
        assert (await register(client, other, unique_address())).status_code == 201
        assert (await login(client, other, PASSWORD, unique_address())).status_code == 200


async def test_logins_per_address_are_limited(user_app: FastAPI) -> None:
    address = unique_address()
    async with client_for(user_app) as client:
        for _ in range(LOGIN_PER_ADDRESS):
            response = await login(client, unique_email("rl"), PASSWORD, address)
            assert response.status_code == 401, response.text
        refused = await login(client, unique_email("rl"), PASSWORD, address)
        assert refused.status_code == 429, refused.text
        assert refused.json()["error"]["code"] == "RATE_LIMITED"
        # The same emails from another address are not limited.
        assert (
            await login(client, unique_email("rl"), PASSWORD, unique_address())
        ).status_code == 401


async def test_forwarded_for_from_an_untrusted_peer_is_ignored(user_app: FastAPI) -> None:
    """A caller that is not a trusted proxy cannot rotate X-Forwarded-For to dodge the limit:
    its own address is counted."""
    peer = unique_address()
    async with client_for(user_app, peer=peer) as client:
        statuses = [
            (await login(client, unique_email("rl"), PASSWORD, unique_address())).status_code
            for _ in range(LOGIN_PER_ADDRESS + 1)
        ]
    assert statuses == [401] * LOGIN_PER_ADDRESS + [429]


async def test_registrations_are_limited_per_email_and_per_address(user_app: FastAPI) -> None:
    async with client_for(user_app) as client:
        email = unique_email("rl")
        taken = [(await register(client, email, unique_address())).status_code for _ in range(3)]
        assert taken == [201, 409, 429]

        address = unique_address()
        statuses = [
            (await register(client, unique_email("rl"), address)).status_code
            for _ in range(REGISTER_PER_ADDRESS + 1)
        ]
        assert statuses == [201] * REGISTER_PER_ADDRESS + [429]
        refused = await register(client, unique_email("rl"), address)
        assert refused.json() == {
            "error": {"code": "RATE_LIMITED", "message": "Too many registrations; try again later."}
        }


async def test_without_redis_nothing_is_limited_and_it_is_said_once() -> None:
    rule = Rule("login-email", parse_limit("1/minute"))
    with capture_logs() as logs:
        limiter = RateLimiter(None, service="svc", timeout_seconds=1)
        for _ in range(5):
            await limiter.hit(rule, "someone@example.com", "Too many.")
    assert not limiter.enabled
    assert [e["event"] for e in logs] == ["rate limits are off: no REDIS_URL"]


async def test_an_unreachable_redis_lets_logins_through() -> None:
    rule = Rule("login-email", parse_limit("1/minute"))
    limiter = RateLimiter("redis://127.0.0.1:1/0", service="svc", timeout_seconds=0.2)
    for _ in range(3):
        await limiter.hit(rule, "someone@example.com", "Too many.")  # never raises


async def test_the_gateway_sends_the_client_address_on(redis_url: str, kafka_broker: str) -> None:
    seen: list[dict[str, Any]] = []

    def user_service(request: httpx.Request) -> httpx.Response:
        seen.append(dict(request.headers))
        return httpx.Response(401, json={"error": {"code": "UNAUTHENTICATED", "message": "No."}})

    settings = gateway_settings(redis_url, kafka_broker)
    async with running_gateway(settings) as running:
        app = running.app
        original: Gateway = app.state.gateway
        users = ServiceClient(
            "user service", "http://users", settings, transport=httpx.MockTransport(user_service)
        )
        clients = original.clients
        object.__setattr__(clients, "users", UserClient(users))
        client_address = unique_address()
        async with asgi_client(app, "gateway", client=(client_address, 5555)) as client:
            response = await client.post(
                "/graphql",
                json={"query": 'mutation { login(email: "a@b.c", password: "x") { token } }'},
                # A client's own X-Forwarded-For is not passed on: the gateway names the peer.
                headers={"x-forwarded-for": "10.0.0.1"},
            )
        assert response.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    assert [h.get("x-forwarded-for") for h in seen] == [client_address]


async def test_through_the_gateway_each_client_address_has_its_own_count(
    user_app: FastAPI, redis_url: str, kafka_broker: str
) -> None:
    """Gateway -> user service: the gateway names its client in X-Forwarded-For, the user
    service trusts it (the gateway is a trusted proxy), and RATE_LIMITED reaches GraphQL."""
    settings = gateway_settings(redis_url, kafka_broker)
    login_query = 'mutation($e: String!) { login(email: $e, password: "wrong-password") { token } }'
    async with running_gateway(settings) as running:
        app = running.app
        send_users_to(running, user_app, GATEWAY_PEER)

        async def codes_from(address: str, attempts: int) -> list[str]:
            async with asgi_client(app, "gw", client=(address, 5555)) as client:
                found = []
                for _ in range(attempts):
                    response = await client.post(
                        "/graphql",
                        json={"query": login_query, "variables": {"e": unique_email("gw")}},
                    )
                    found.append(response.json()["errors"][0]["extensions"]["code"])
                return found

        busy = await codes_from(unique_address(), LOGIN_PER_ADDRESS + 1)
        assert busy == ["UNAUTHENTICATED"] * LOGIN_PER_ADDRESS + ["RATE_LIMITED"]
        # Another client behind the same gateway is not held back.
        assert await codes_from(unique_address(), 1) == ["UNAUTHENTICATED"]
