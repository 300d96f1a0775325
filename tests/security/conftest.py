"""Every service app in this process (httpx ASGITransport, real lifespans on the real broker)
and the gateway under uvicorn in front of them (its service clients go through ASGITransport
to those apps), with the callers the security tests need: an owner with data, another
customer, an admin, and the bad tokens (none, forged, expired)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import secrets
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, ExitStack
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import httpx
import pytest_asyncio
import uvicorn
from fastapi import FastAPI

import kafka_admin_service.main as kafka_admin_main
import notification_service.main as notification_main
import order_service.main as order_main
import recommendation_service.main as recommendation_main
import scheduler_service.main as scheduler_main
import user_service.main as user_main
from devstack.parts import LOOPBACK, free_port
from graphql_gateway.clients import (
    Clients,
    NotificationClient,
    OrderClient,
    RecommendationClient,
    SchedulerClient,
    ServiceClient,
    UserClient,
)
from graphql_gateway.main import create_app as create_gateway
from graphql_gateway.schema.context import Gateway
from graphql_gateway.settings import GatewaySettings
from kafka_admin_service.settings import KafkaAdminSettings
from notification_service.settings import NotificationSettings
from order_service.settings import OrderSettings
from recommendation_service.settings import RecommendationSettings
from scheduler_service.settings import SchedulerSettings
from shared.auth import issue_token
from shared.links import LinkPurpose, LinkSigner
from tests.fixtures.apps import (
    RunningService,
    own_consumer_group,
    running_service,
    service_settings,
)
from tests.fixtures.parts import TEST_JWT_SECRET, eventually
from user_service.settings import UserSettings

ISSUER = "fleet"
PASSWORD = "security matrix password 1"
ADMIN_EMAIL = f"sec-admin-{uuid.uuid4().hex[:10]}@example.com"
# A cron that does not fire while the tests run.
NEVER_CRON = "0 0 1 1 *"
# The port the gateway's calls to an in-process user service come from (any; only the address
# counts).
GATEWAY_CLIENT_PORT = 40001


class Kind(StrEnum):
    """Who calls."""

    NONE = "no token"
    FORGED = "forged token"
    EXPIRED = "expired token"
    OTHER = "another user's token"
    OWNER = "customer (the owner)"
    ADMIN = "admin"


BAD_TOKENS = (Kind.NONE, Kind.FORGED, Kind.EXPIRED)
ALL_KINDS = tuple(Kind)


@dataclass
class Account:
    user_id: str
    email: str
    token: str
    refresh_token: str = ""


def unique_email(tag: str = "sec") -> str:
    return f"{tag}-{uuid.uuid4().hex}@example.com"


def forged_token(account: Account) -> str:
    """The owner's claims with the admin role, signed with a key that is not the fleet's."""
    return issue_token(
        user_id=account.user_id,
        email=account.email,
        roles=["customer", "admin"],
        secret="forged-" + secrets.token_hex(24),
        issuer=ISSUER,
        ttl_seconds=3600,
    )


def expired_token(account: Account) -> str:
    return issue_token(
        user_id=account.user_id,
        email=account.email,
        roles=["customer"],
        secret=TEST_JWT_SECRET,
        issuer=ISSUER,
        ttl_seconds=-120,
    )


@dataclass
class World:
    """The running apps, a client per service, the gateway's URL, and the callers."""

    apps: dict[str, FastAPI]
    clients: dict[str, httpx.AsyncClient]
    gateway_url: str
    gateway_app: FastAPI
    owner: Account
    other: Account
    admin: Account
    settings: dict[str, Any] = field(default_factory=dict)

    def token(self, kind: Kind) -> str | None:
        return {
            Kind.NONE: None,
            Kind.FORGED: forged_token(self.owner),
            Kind.EXPIRED: expired_token(self.owner),
            Kind.OTHER: self.other.token,
            Kind.OWNER: self.owner.token,
            Kind.ADMIN: self.admin.token,
        }[kind]

    def headers(self, kind: Kind) -> dict[str, str]:
        token = self.token(kind)
        return {"Authorization": f"Bearer {token}"} if token else {}

    def account(self, kind: Kind) -> Account | None:
        return {Kind.OTHER: self.other, Kind.OWNER: self.owner, Kind.ADMIN: self.admin}.get(kind)

    async def place_owner_order(self) -> str:
        response = await self.clients["order_service"].post(
            "/orders",
            json={"products": [{"productId": "1"}]},
            headers=self.headers(Kind.OWNER),
        )
        assert response.status_code == 201, response.text
        return str(response.json()["id"])

    async def owner_notification(self) -> str:
        """The id of one of the owner's notifications (the welcome one, once stored)."""

        async def listed() -> list[dict[str, Any]]:
            response = await self.clients["notification_service"].get(
                "/notifications",
                params={"unread_only": "false"},
                headers=self.headers(Kind.OWNER),
            )
            return list(response.json()) if response.status_code == 200 else []

        found = await eventually(listed, what="the owner's welcome notification")
        return str(found[-1]["id"])


def _service_settings(kafka_broker: str) -> dict[str, Any]:
    def settings(settings_class: type[Any], **overrides: Any) -> Any:
        return service_settings(settings_class, kafka_broker, admin_emails=ADMIN_EMAIL, **overrides)

    return {
        "user_service": settings(UserSettings),
        "notification_service": settings(NotificationSettings),
        "order_service": settings(OrderSettings),
        "recommendation_service": settings(RecommendationSettings),
        "scheduler_service": settings(SchedulerSettings, promotion_cron=NEVER_CRON),
        "kafka_admin_service": settings(KafkaAdminSettings),
    }


CREATE_APP: dict[str, Callable[[Any], FastAPI]] = {
    "user_service": user_main.create_app,
    "notification_service": notification_main.create_app,
    "order_service": order_main.create_app,
    "recommendation_service": recommendation_main.create_app,
    "scheduler_service": scheduler_main.create_app,
    "kafka_admin_service": kafka_admin_main.create_app,
}
# Main modules whose consumer group gets a name of this module's own (Tansu can hang a
# restarted group's join).
_GROUPED = (user_main, notification_main, recommendation_main, scheduler_main)


def _gateway_clients(apps: dict[str, FastAPI], settings: GatewaySettings) -> Clients:
    def client(label: str, name: str) -> ServiceClient:
        # Like a network: a crash inside the service is its 500 answer, not an exception here.
        transport = httpx.ASGITransport(app=apps[name], raise_app_exceptions=False)
        return ServiceClient(label, f"http://{name}", settings, transport=transport)

    return Clients(
        users=UserClient(client("user service", "user_service")),
        notifications=NotificationClient(client("notification service", "notification_service")),
        orders=OrderClient(client("order service", "order_service")),
        recommendations=RecommendationClient(
            client("recommendation service", "recommendation_service")
        ),
        scheduler=SchedulerClient(client("scheduler service", "scheduler_service")),
    )


@contextlib.asynccontextmanager
async def serve_gateway(settings: GatewaySettings, apps: dict[str, FastAPI]) -> AsyncIterator[Any]:
    """The gateway under uvicorn, its service clients pointed at the in-process apps."""
    app = create_gateway(settings)
    server = uvicorn.Server(
        # As shared.serve runs it: no access log (a path can carry a link's token).
        uvicorn.Config(
            app,
            host=LOOPBACK,
            port=settings.port,
            log_config=None,
            lifespan="on",
            access_log=False,
            proxy_headers=False,
        )
    )
    task = asyncio.create_task(server.serve())
    try:
        await eventually(lambda: server.started, what="the gateway under uvicorn")
        # Stopped while its event reader still starts, the gateway leaks a Kafka producer.
        await eventually(app.state.cache_events.ready, what="the gateway's event reader")
        original: Gateway = app.state.gateway
        app.state.gateway = dataclasses.replace(original, clients=_gateway_clients(apps, settings))
        await original.clients.aclose()
        yield app
    finally:
        server.should_exit = True
        await task
        await app.state.gateway.clients.aclose()


@contextlib.asynccontextmanager
async def running_gateway(settings: GatewaySettings) -> AsyncIterator[RunningService[Any]]:
    """The gateway in-process with a client of it, once its event reader is up (stopped while
    the reader still starts, the gateway leaks a Kafka producer)."""
    async with running_service(create_gateway, settings) as running:
        app = running.app
        await eventually(app.state.cache_events.ready, what="the gateway's event reader")
        yield running


def send_users_to(gateway: RunningService[Any], user_app: FastAPI, peer: str) -> None:
    """The gateway's user-service client calls `user_app` in-process, arriving from `peer`
    (the gateway's address as the user service sees it)."""
    transport = httpx.ASGITransport(app=user_app, client=(peer, GATEWAY_CLIENT_PORT))
    users = ServiceClient("user service", "http://users", gateway.settings, transport=transport)
    object.__setattr__(gateway.app.state.gateway.clients, "users", UserClient(users))


def gateway_settings(redis_url: str, kafka_broker: str, **overrides: Any) -> GatewaySettings:
    values: dict[str, Any] = {
        "_env_file": None,
        "kafka_broker": kafka_broker,
        "redis_url": redis_url,
        "jwt_secret": TEST_JWT_SECRET,
        "port": free_port(),
        "host": LOOPBACK,
    }
    values.update(overrides)
    return GatewaySettings(**values)


async def register(client: httpx.AsyncClient, email: str) -> Account:
    response = await client.post(
        "/users", json={"name": "Sec Tester", "email": email, "password": PASSWORD}
    )
    assert response.status_code == 201, response.text
    body = response.json()
    return Account(body["user"]["id"], email, body["token"], body["refreshToken"])


def verification_token(user_app: FastAPI, user: dict[str, Any]) -> str:
    """The token of the user's pending verification link (as the welcome email carries it)."""
    return str(
        LinkSigner(TEST_JWT_SECRET).sign(
            LinkPurpose.VERIFY_EMAIL,
            user["_id"],
            ttl_seconds=user_app.state.settings.email_verification_ttl_seconds,
            token_id=user["verify_jti"],
        )
    )


async def verified_admin(client: httpx.AsyncClient, user_app: FastAPI, email: str) -> Account:
    """Register an ADMIN_EMAILS address, follow its verification link, and log in: only then
    does its token carry the admin role."""
    registered = await register(client, email)
    user = await user_app.state.service.repository.by_id(registered.user_id)
    verified = await client.post(
        "/auth/verify-email", json={"token": verification_token(user_app, user)}
    )
    assert verified.status_code == 200, verified.text
    login = await client.post("/auth/login", json={"email": email, "password": PASSWORD})
    assert login.status_code == 200, login.text
    body = login.json()
    return Account(registered.user_id, email, body["token"], body["refreshToken"])


@pytest_asyncio.fixture(scope="package", loop_scope="session")
async def world(kafka_broker: str, redis_url: str) -> AsyncIterator[World]:
    settings = _service_settings(kafka_broker)
    async with AsyncExitStack() as stack:
        apps: dict[str, FastAPI] = {}
        clients: dict[str, httpx.AsyncClient] = {}
        with ExitStack() as groups:
            for module in _GROUPED:
                groups.enter_context(own_consumer_group(module, "sec"))
            for name, create in CREATE_APP.items():
                # Like a network: a crash inside the service is its 500 answer, not an exception.
                running = await stack.enter_async_context(
                    running_service(create, settings[name], raise_app_exceptions=False)
                )
                apps[name] = running.app
                clients[name] = running.client
        gateway = await stack.enter_async_context(
            serve_gateway(gateway_settings(redis_url, kafka_broker), apps)
        )
        users = clients["user_service"]
        owner = await register(users, unique_email("owner"))
        other = await register(users, unique_email("other"))
        admin = await verified_admin(users, apps["user_service"], ADMIN_EMAIL)
        port = gateway.state.settings.port
        yield World(
            apps=apps,
            clients=clients,
            gateway_url=f"http://{LOOPBACK}:{port}",
            gateway_app=gateway,
            owner=owner,
            other=other,
            admin=admin,
            settings=settings,
        )
