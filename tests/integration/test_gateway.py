"""The gateway against real HTTP stand-ins of the user and notification services (small FastAPI
apps on uvicorn implementing their REST contract in memory), the real broker and Redis.

The stand-ins count every call, so a test can tell whether the gateway reached a service or
answered from its cache (or refused before calling)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI, Request, Response
from pydantic import BaseModel

from devstack.parts import LOOPBACK, free_port
from graphql_gateway.main import create_app
from graphql_gateway.settings import GatewaySettings
from shared.auth import ROLE_CUSTOMER, issue_token
from shared.errors import BadUserInput, Conflict, NotFound, Unauthenticated
from shared.events import NotificationCreated, NotificationRead
from shared.http import CallerDep, install_common
from shared.publisher import EventPublisher
from shared.settings import ServiceSettings
from tests.fixtures.apps import running_service
from tests.fixtures.parts import TEST_JWT_SECRET, eventually

pytestmark = pytest.mark.integration

ISSUER = "fleet"
GIF = b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00\x00\x00\x00,"
MIN_PASSWORD_LENGTH = 8


def fake_settings(name: str) -> ServiceSettings:
    return ServiceSettings(service_name=name, jwt_secret=TEST_JWT_SECRET)


def token_for(user_id: str, email: str, *, secret: str = TEST_JWT_SECRET, ttl: int = 600) -> str:
    return issue_token(
        user_id=user_id,
        email=email,
        roles=[ROLE_CUSTOMER],
        secret=secret,
        issuer=ISSUER,
        ttl_seconds=ttl,
    )


# --- the stand-ins ------------------------------------------------------------------------


@dataclass
class Calls:
    """What a stand-in received: calls per route and the correlation ids it saw."""

    hits: Counter[str] = field(default_factory=Counter)
    correlation_ids: list[str] = field(default_factory=list)

    def record(self, route: str, request: Request) -> None:
        self.hits[route] += 1
        self.correlation_ids.append(request.headers.get("x-correlation-id", ""))

    @property
    def total(self) -> int:
        return sum(self.hits.values())


class NewUser(BaseModel):
    name: str
    email: str
    password: str
    preferences: list[str] = ["order_updates"]


class Credentials(BaseModel):
    email: str
    password: str


class Preferences(BaseModel):
    preferences: list[str]


@dataclass
class UserStore:
    users: dict[str, dict[str, Any]] = field(default_factory=dict)
    passwords: dict[str, str] = field(default_factory=dict)
    calls: Calls = field(default_factory=Calls)

    def by_email(self, email: str) -> dict[str, Any] | None:
        return next((u for u in self.users.values() if u["email"] == email), None)


def user_service_app(store: UserStore) -> FastAPI:
    app = FastAPI()
    install_common(app, fake_settings("fake_user_service"))

    @app.post("/users", status_code=201)
    async def register(body: NewUser, request: Request) -> dict[str, Any]:
        store.calls.record("register", request)
        if len(body.password) < MIN_PASSWORD_LENGTH:
            raise BadUserInput("The password must be at least 8 characters long.")
        if store.by_email(body.email) is not None:
            raise Conflict("That email is already registered.")
        user: dict[str, Any] = {
            "id": uuid.uuid4().hex,
            "name": body.name,
            "email": body.email,
            "preferences": body.preferences,
            "order_status": "none",
            "orders": [],
            "purchase_history": [],
        }
        store.users[user["id"]] = user
        store.passwords[user["id"]] = body.password
        return {"token": token_for(user["id"], body.email), "refreshToken": "r", "user": user}

    @app.post("/auth/login")
    async def login(body: Credentials, request: Request) -> dict[str, Any]:
        store.calls.record("login", request)
        user = store.by_email(body.email)
        if user is None or store.passwords[user["id"]] != body.password:
            raise Unauthenticated("The email or password is not right.")
        return {"token": token_for(user["id"], user["email"]), "refreshToken": "r", "user": user}

    @app.get("/users/me")
    async def me(caller: CallerDep, request: Request) -> dict[str, Any]:
        store.calls.record("me", request)
        return store.users[caller.user_id]

    @app.get("/users/me/purchases")
    async def purchases(caller: CallerDep, request: Request, first: int = 20) -> Any:
        store.calls.record("purchases", request)
        return store.users[caller.user_id]["purchase_history"][:first]

    @app.put("/users/me/preferences")
    async def preferences(body: Preferences, caller: CallerDep, request: Request) -> Any:
        store.calls.record("preferences", request)
        store.users[caller.user_id]["preferences"] = body.preferences
        return store.users[caller.user_id]

    return app


@dataclass
class NotificationStore:
    notifications: dict[str, dict[str, Any]] = field(default_factory=dict)
    pixels: list[str] = field(default_factory=list)
    calls: Calls = field(default_factory=Calls)

    def add(self, user_id: str, content: str) -> dict[str, Any]:
        notification: dict[str, Any] = {
            "id": uuid.uuid4().hex,
            "userId": user_id,
            "type": "other",
            "content": content,
            "sentAt": datetime.now(UTC).isoformat(),
            "read": False,
        }
        self.notifications[notification["id"]] = notification
        return notification


def notification_service_app(store: NotificationStore) -> FastAPI:
    app = FastAPI()
    install_common(app, fake_settings("fake_notification_service"))

    @app.get("/notifications")
    async def listing(caller: CallerDep, request: Request, unread_only: bool = True) -> Any:
        store.calls.record("list", request)
        mine = [
            n
            for n in store.notifications.values()
            if n["userId"] == caller.user_id and not (unread_only and n["read"])
        ]
        return sorted(mine, key=lambda n: n["sentAt"], reverse=True)

    @app.post("/notifications/{notification_id}/read")
    async def mark_read(notification_id: str, caller: CallerDep, request: Request) -> Any:
        store.calls.record("read", request)
        notification = store.notifications.get(notification_id)
        if notification is None or notification["userId"] != caller.user_id:
            raise NotFound("That notification does not exist.")
        notification["read"] = True
        return notification

    @app.get("/track/{token}.gif")
    async def pixel(token: str, request: Request) -> Response:
        store.calls.record("pixel", request)
        store.pixels.append(token)
        payload = token.rpartition(".")[0]
        with contextlib.suppress(ValueError):
            notification_id, _ = json.loads(base64.urlsafe_b64decode(payload + "=="))
            if notification_id in store.notifications:
                store.notifications[notification_id]["read"] = True
        return Response(GIF, media_type="image/gif")

    return app


class Served:
    """An app served by uvicorn on a free loopback port, in this event loop (its lifespan
    run when `lifespan="on"`)."""

    def __init__(self, app: FastAPI, lifespan: str = "off") -> None:
        self.port = free_port()
        self.url = f"http://{LOOPBACK}:{self.port}"
        config = uvicorn.Config(
            app, host=LOOPBACK, port=self.port, log_config=None, lifespan=lifespan
        )
        self.server = uvicorn.Server(config)
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> Served:
        self._task = asyncio.create_task(self.server.serve())
        await eventually(lambda: self.server.started, what="stand-in started")
        return self

    async def stop(self) -> None:
        self.server.should_exit = True
        if self._task is not None:
            await self._task


@dataclass
class Fleet:
    users: UserStore
    notifications: NotificationStore
    user_service: Served
    notification_service: Served


@pytest.fixture(scope="module")
async def fleet() -> AsyncIterator[Fleet]:
    users, notifications = UserStore(), NotificationStore()
    user_service = await Served(user_service_app(users)).start()
    notification_service = await Served(notification_service_app(notifications)).start()
    try:
        yield Fleet(users, notifications, user_service, notification_service)
    finally:
        await user_service.stop()
        await notification_service.stop()


# --- the gateway --------------------------------------------------------------------------


@dataclass
class RunningGateway:
    app: FastAPI
    http: httpx.AsyncClient

    async def graphql(
        self,
        query: str,
        variables: dict[str, Any] | None = None,
        *,
        token: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        sent = dict(headers or {})
        if token is not None:
            sent["authorization"] = f"Bearer {token}"
        response = await self.http.post(
            "/graphql", json={"query": query, "variables": variables or {}}, headers=sent
        )
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body


def gateway_settings(fleet: Fleet, kafka_broker: str, redis_url: str, **overrides: Any) -> Any:
    values: dict[str, Any] = {
        "jwt_secret": TEST_JWT_SECRET,
        "kafka_broker": kafka_broker,
        "redis_url": redis_url,
        "user_service_url": fleet.user_service.url,
        "notification_service_url": fleet.notification_service.url,
        # Nothing listens here (tests/integration/test_gateway_orders.py has stand-ins for them).
        "order_service_url": f"http://{LOOPBACK}:{free_port()}",
        "recommendation_service_url": f"http://{LOOPBACK}:{free_port()}",
        "scheduler_service_url": f"http://{LOOPBACK}:{free_port()}",
        "cache_ttl_seconds": 300,
        **overrides,
    }
    return GatewaySettings(**values)


@asynccontextmanager
async def running_gateway(settings: GatewaySettings) -> AsyncIterator[RunningGateway]:
    async with running_service(create_app, settings) as running:
        yield RunningGateway(running.app, running.client)


@pytest.fixture(scope="module")
async def gateway(fleet: Fleet, kafka_broker: str, redis_url: str) -> AsyncIterator[RunningGateway]:
    async with running_gateway(gateway_settings(fleet, kafka_broker, redis_url)) as running:
        yield running


REGISTER = """
mutation Register(
  $name: String!, $email: String!, $password: String!, $preferences: [Preference!]
) {
  registerUser(name: $name, email: $email, password: $password, preferences: $preferences) {
    token
    user {
      id name email preferences order_status orders { productId } purchase_history { orderId }
    }
  }
}"""
LOGIN = """
mutation Login($email: String!, $password: String!) {
  login(email: $email, password: $password) { token user { id email } }
}"""
DETAILS = "query { getUserDetails { id name email preferences order_status } }"
PREFERENCES = """
mutation Prefs($preferences: [Preference!]!) {
  updateUserPreferences(preferences: $preferences) { id preferences }
}"""
NOTIFICATIONS = """
query Notes($unreadOnly: Boolean) {
  getUserNotifications(unreadOnly: $unreadOnly) { id userId type content sentAt read }
}"""
MARK_READ = "mutation Read($id: ID!) { markNotificationRead(id: $id) { id read } }"


def unique_email() -> str:
    return f"gw-{uuid.uuid4().hex[:12]}@example.com"


def codes(body: dict[str, Any]) -> list[str]:
    return [error["extensions"]["code"] for error in body.get("errors", [])]


async def register(gateway: RunningGateway, **extra: Any) -> dict[str, Any]:
    variables = {"name": "Ada", "email": unique_email(), "password": "correct-horse", **extra}
    body = await gateway.graphql(REGISTER, variables)
    assert "errors" not in body, body
    payload: dict[str, Any] = body["data"]["registerUser"]
    return payload


# --- tests --------------------------------------------------------------------------------


async def test_register_login_and_details_round_trip(gateway: RunningGateway, fleet: Fleet) -> None:
    email = unique_email()
    body = await gateway.graphql(
        REGISTER,
        {"name": "Ada", "email": email, "password": "correct-horse", "preferences": ["promotions"]},
        headers={"x-correlation-id": "gateway-test-correlation"},
    )
    registered = body["data"]["registerUser"]
    assert registered["user"]["email"] == email
    assert registered["user"]["preferences"] == ["promotions"]
    assert registered["user"]["order_status"] == "none"
    assert "gateway-test-correlation" in fleet.users.calls.correlation_ids

    logged_in = await gateway.graphql(LOGIN, {"email": email, "password": "correct-horse"})
    assert logged_in["data"]["login"]["user"]["id"] == registered["user"]["id"]

    # The login token is forwarded and the user service identifies the caller by it.
    details = await gateway.graphql(DETAILS, token=logged_in["data"]["login"]["token"])
    assert details["data"]["getUserDetails"] == {
        "id": registered["user"]["id"],
        "name": "Ada",
        "email": email,
        "preferences": ["promotions"],
        "order_status": "none",
    }

    wrong = await gateway.graphql(LOGIN, {"email": email, "password": "wrong-password"})
    assert codes(wrong) == ["UNAUTHENTICATED"]
    assert wrong["errors"][0]["message"] == "The email or password is not right."


@pytest.mark.parametrize(
    "token",
    [
        None,
        token_for("someone", "someone@example.com", secret="forged-" + "x" * 40),
        token_for("someone", "someone@example.com", ttl=-60),
        "not-a-jwt",
    ],
    ids=["missing", "forged", "expired", "garbage"],
)
async def test_bad_tokens_are_refused_before_any_downstream_call(
    gateway: RunningGateway, fleet: Fleet, token: str | None
) -> None:
    before = fleet.users.calls.total + fleet.notifications.calls.total
    for query, variables in [
        (DETAILS, None),
        (NOTIFICATIONS, {"unreadOnly": True}),
        (PREFERENCES, {"preferences": ["promotions"]}),
        (MARK_READ, {"id": "anything"}),
        ("query { orders { id } }", None),
    ]:
        body = await gateway.graphql(query, variables, token=token)
        assert body["data"] is None
        assert codes(body) == ["UNAUTHENTICATED"], body
    assert fleet.users.calls.total + fleet.notifications.calls.total == before


async def test_user_details_are_cached_until_preferences_change(
    gateway: RunningGateway, fleet: Fleet
) -> None:
    registered = await register(gateway)
    token = registered["token"]
    me_calls = fleet.users.calls.hits["me"]

    first = await gateway.graphql(DETAILS, token=token)
    second = await gateway.graphql(DETAILS, token=token)
    assert first == second
    assert first["data"]["getUserDetails"]["preferences"] == ["order_updates"]
    assert fleet.users.calls.hits["me"] == me_calls + 1

    updated = await gateway.graphql(
        PREFERENCES, {"preferences": ["recommendations", "promotions"]}, token=token
    )
    assert updated["data"]["updateUserPreferences"]["preferences"] == [
        "recommendations",
        "promotions",
    ]
    third = await gateway.graphql(DETAILS, token=token)
    assert third["data"]["getUserDetails"]["preferences"] == ["recommendations", "promotions"]
    assert fleet.users.calls.hits["me"] == me_calls + 2


async def test_notifications_are_cached_and_invalidated(
    gateway: RunningGateway, fleet: Fleet, kafka_broker: str
) -> None:
    registered = await register(gateway)
    token, user_id = registered["token"], registered["user"]["id"]
    first_note = fleet.notifications.add(user_id, "Welcome aboard.")
    list_calls = fleet.notifications.calls.hits["list"]

    listed = await gateway.graphql(NOTIFICATIONS, {"unreadOnly": True}, token=token)
    assert [n["id"] for n in listed["data"]["getUserNotifications"]] == [first_note["id"]]
    assert listed["data"]["getUserNotifications"][0]["type"] == "other"

    # Stored downstream but not announced: the gateway still answers from its cache.
    second_note = fleet.notifications.add(user_id, "Your order shipped.")
    cached = await gateway.graphql(NOTIFICATIONS, {"unreadOnly": True}, token=token)
    assert cached == listed
    assert fleet.notifications.calls.hits["list"] == list_calls + 1

    # markNotificationRead drops the user's lists.
    read = await gateway.graphql(MARK_READ, {"id": first_note["id"]}, token=token)
    assert read["data"]["markNotificationRead"] == {"id": first_note["id"], "read": True}
    after_read = await gateway.graphql(NOTIFICATIONS, {"unreadOnly": True}, token=token)
    assert [n["id"] for n in after_read["data"]["getUserNotifications"]] == [second_note["id"]]
    everything = await gateway.graphql(NOTIFICATIONS, {"unreadOnly": False}, token=token)
    assert {n["id"] for n in everything["data"]["getUserNotifications"]} == {
        first_note["id"],
        second_note["id"],
    }

    # A NotificationCreated event on the broker drops them too.
    third_note = fleet.notifications.add(user_id, "A promotion for you.")
    cached_again = await gateway.graphql(NOTIFICATIONS, {"unreadOnly": True}, token=token)
    assert third_note["id"] not in {n["id"] for n in cached_again["data"]["getUserNotifications"]}

    events = gateway.app.state.cache_events
    await eventually(events.assigned, what="the gateway's broadcast consumer")
    publisher = EventPublisher(
        ServiceSettings(
            service_name="test_publisher",
            jwt_secret=TEST_JWT_SECRET,
            kafka_broker=kafka_broker,
        )
    )
    await publisher.start()
    try:

        async def announced_and_fresh() -> bool:
            # A broadcast reader starts at the end: announce again until one is heard.
            await publisher.publish(
                NotificationCreated(
                    notification_id=third_note["id"],
                    user_id=user_id,
                    type="other",
                    content=third_note["content"],
                    sent_at=datetime.now(UTC),
                )
            )
            body = await gateway.graphql(NOTIFICATIONS, {"unreadOnly": True}, token=token)
            return third_note["id"] in {n["id"] for n in body["data"]["getUserNotifications"]}

        await eventually(announced_and_fresh, interval=0.3, what="the cache to be dropped")
    finally:
        await publisher.stop()


async def test_service_errors_keep_their_code(gateway: RunningGateway) -> None:
    registered = await register(gateway)
    taken = await gateway.graphql(
        REGISTER,
        {"name": "Bob", "email": registered["user"]["email"], "password": "another-pass"},
    )
    assert codes(taken) == ["CONFLICT"]
    assert taken["errors"][0]["message"] == "That email is already registered."

    short = await gateway.graphql(
        REGISTER, {"name": "Bob", "email": unique_email(), "password": "short"}
    )
    assert codes(short) == ["BAD_USER_INPUT"]

    missing = await gateway.graphql(MARK_READ, {"id": "no-such-id"}, token=registered["token"])
    assert codes(missing) == ["NOT_FOUND"]


async def test_bad_enum_value_is_a_validation_error(gateway: RunningGateway, fleet: Fleet) -> None:
    registered = await register(gateway)
    before = fleet.users.calls.total
    body = await gateway.graphql(
        "mutation { updateUserPreferences(preferences: [spam]) { id } }",
        token=registered["token"],
    )
    assert body["data"] is None
    assert "spam" in body["errors"][0]["message"]
    assert "extensions" not in body["errors"][0]
    assert fleet.users.calls.total == before


@pytest.mark.parametrize(
    ("query", "sentence"),
    [
        ("query { orders { id } }", "The order service is unavailable; try again shortly."),
        (
            "query { recommendations { productId } }",
            "The recommendation service is unavailable; try again shortly.",
        ),
        (
            "query { productRecommendation }",
            "The recommendation service is unavailable; try again shortly.",
        ),
        (
            'mutation { placeOrder(products: [{productId: "1", title: "Tea", category: "food"}])'
            " { id } }",
            "The order service is unavailable; try again shortly.",
        ),
        (
            'mutation { updateOrderStatus(orderId: "1", order_status: Cancelled) { id } }',
            "The order service is unavailable; try again shortly.",
        ),
        ("mutation { taskSchedular }", "The scheduler service is unavailable; try again shortly."),
        (
            "mutation { cancelTaskSchedular }",
            "The scheduler service is unavailable; try again shortly.",
        ),
    ],
)
async def test_services_not_answering_are_unavailable(
    gateway: RunningGateway, query: str, sentence: str
) -> None:
    # This module's gateway points the order, recommendation and scheduler URLs at closed ports.
    token = token_for(uuid.uuid4().hex, unique_email())
    body = await gateway.graphql(query, token=token)
    assert codes(body) == ["SERVICE_UNAVAILABLE"]
    assert body["errors"][0]["message"] == sentence
    assert codes(await gateway.graphql(query)) == ["UNAUTHENTICATED"]


async def test_pixel_is_proxied(gateway: RunningGateway, fleet: Fleet) -> None:
    token = uuid.uuid4().hex
    response = await gateway.http.get(f"/track/{token}.gif")
    assert response.status_code == 200
    assert response.content == GIF
    assert response.headers["content-type"] == "image/gif"
    assert "no-store" in response.headers["cache-control"]
    assert fleet.notifications.pixels[-1] == token


async def test_notification_read_event_drops_the_cached_notifications(
    gateway: RunningGateway, fleet: Fleet, kafka_broker: str
) -> None:
    registered = await register(gateway)
    token, user_id = registered["token"], registered["user"]["id"]
    note = fleet.notifications.add(user_id, "Welcome aboard.")
    listed = await gateway.graphql(NOTIFICATIONS, {"unreadOnly": True}, token=token)
    assert [n["id"] for n in listed["data"]["getUserNotifications"]] == [note["id"]]

    # Read through the pixel: the notification service marks it and announces the read.
    fleet.notifications.notifications[note["id"]]["read"] = True
    still_cached = await gateway.graphql(NOTIFICATIONS, {"unreadOnly": True}, token=token)
    assert still_cached == listed

    await eventually(gateway.app.state.cache_events.assigned, what="the broadcast consumer")
    publisher = EventPublisher(
        ServiceSettings(
            service_name="test_publisher", jwt_secret=TEST_JWT_SECRET, kafka_broker=kafka_broker
        )
    )
    await publisher.start()
    try:

        async def announced_and_fresh() -> bool:
            await publisher.publish(NotificationRead(notification_id=note["id"], user_id=user_id))
            body = await gateway.graphql(NOTIFICATIONS, {"unreadOnly": True}, token=token)
            return body["data"]["getUserNotifications"] == []

        await eventually(announced_and_fresh, interval=0.3, what="the cache to be dropped")
    finally:
        await publisher.stop()


async def test_user_service_outage_is_service_unavailable(
    kafka_broker: str, redis_url: str, fleet: Fleet
) -> None:
    store = UserStore()
    user_service = await Served(user_service_app(store)).start()
    own_fleet = Fleet(store, fleet.notifications, user_service, fleet.notification_service)
    settings = gateway_settings(own_fleet, kafka_broker, redis_url, cache_ttl_seconds=1)
    async with running_gateway(settings) as gateway:
        registered = await register(gateway)
        await user_service.stop()

        login = await gateway.graphql(
            LOGIN, {"email": registered["user"]["email"], "password": "correct-horse"}
        )
        assert codes(login) == ["SERVICE_UNAVAILABLE"]
        assert login["errors"][0]["message"] == (
            "The user service is unavailable; try again shortly."
        )
        health = await gateway.http.get("/health")
        assert health.status_code == 200


async def test_redis_outage_still_answers(kafka_broker: str, fleet: Fleet) -> None:
    closed = f"redis://{LOOPBACK}:{free_port()}/0"
    settings = gateway_settings(fleet, kafka_broker, closed)
    async with running_gateway(settings) as without_redis:
        registered = await register(without_redis)
        me_calls = fleet.users.calls.hits["me"]
        for _ in range(2):
            body = await without_redis.graphql(DETAILS, token=registered["token"])
            assert body["data"]["getUserDetails"]["id"] == registered["user"]["id"]
        assert fleet.users.calls.hits["me"] == me_calls + 2

        ready = await without_redis.http.get("/ready")
        assert ready.status_code == 503
        assert ready.json()["checks"]["redis"] is False
        # What the ServiceNotReady alert reads.
        metrics = await without_redis.http.get("/metrics")
        assert 'service_ready{service="graphql_gateway"} 0.0' in metrics.text


async def test_readiness_and_metrics(gateway: RunningGateway) -> None:
    await eventually(gateway.app.state.cache_events.ready, what="the broadcast consumer")
    ready = await gateway.http.get("/ready")
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"] == {"redis": True, "events": True}
    metrics = await gateway.http.get("/metrics")
    assert 'route="/graphql"' in metrics.text
    assert 'service_ready{service="graphql_gateway"} 1.0' in metrics.text
