"""The user service against the real broker: register, log in, read and change oneself.

Every bad input must answer its error code, store nothing and publish nothing.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import pytest_asyncio

from shared.auth import issue_token, verify_token
from shared.events import Envelope, UserPreferencesUpdated, UserRegistered
from tests.fixtures.apps import running_service, service_settings
from tests.fixtures.parts import TEST_JWT_SECRET, eventually, read_all
from user_service.main import create_app
from user_service.repository import UserRepository
from user_service.settings import UserSettings

pytestmark = pytest.mark.integration

ADMIN_EMAIL = f"admin-{uuid.uuid4().hex[:8]}@example.com"
PASSWORD = "correct horse battery"


@dataclass
class UserServiceUnderTest:
    client: httpx.AsyncClient
    repository: UserRepository
    broker: str
    settings: UserSettings

    async def register(self, **overrides: Any) -> httpx.Response:
        body = {"name": "Ada Lovelace", "email": unique_email(), "password": PASSWORD}
        body.update(overrides)
        return await self.client.post("/users", json=body)

    async def events(self, topic: str) -> list[tuple[str | None, Envelope]]:
        """(key, envelope) of every record on the topic."""
        return [
            (r.key.decode() if r.key else None, Envelope.from_bytes(r.value))
            for r in await read_all(self.broker, topic)
        ]

    async def events_mentioning(self, topic: str, marker: str) -> list[Envelope]:
        """Envelopes on the topic whose payload contains the marker."""
        return [e for _, e in await self.events(topic) if marker in e.model_dump_json()]


def unique_email(marker: str | None = None) -> str:
    return f"user-{marker or uuid.uuid4().hex}@example.com"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def service(kafka_broker: str) -> AsyncIterator[UserServiceUnderTest]:
    settings = service_settings(UserSettings, kafka_broker, admin_emails=ADMIN_EMAIL.upper())
    async with running_service(create_app, settings) as running:
        app, client = running.app, running.client
        yield UserServiceUnderTest(client, app.state.service.repository, kafka_broker, settings)


async def test_ready(service: UserServiceUnderTest) -> None:
    response = await service.client.get("/ready")
    assert response.status_code == 200, response.text
    assert response.json()["ready"] is True


async def test_register_stores_the_user_and_publishes_user_registered(
    service: UserServiceUnderTest,
) -> None:
    marker = uuid.uuid4().hex
    response = await service.register(
        name="  Ada Lovelace  ",
        email=f"Ada.{marker}@Example.COM",
        preferences=["recommendations", "promotions", "recommendations"],
    )
    assert response.status_code == 201, response.text
    body = response.json()
    user = body["user"]
    email = f"ada.{marker}@example.com"
    assert user == {
        "id": user["id"],
        "name": "Ada Lovelace",
        "email": email,
        "preferences": ["recommendations", "promotions"],
        "order_status": "none",
        "orders": [],
        "purchase_history": [],
        "emailVerified": False,
    }
    caller = verify_token(body["token"], secret=TEST_JWT_SECRET, issuer="fleet")
    assert (caller.user_id, caller.email, caller.roles) == (user["id"], email, ("customer",))
    assert caller.session_id is not None
    assert body["refreshToken"].startswith(f"{user['id']}.{caller.session_id}.")

    stored = await service.repository.users.find_one({"_id": user["id"]})
    assert stored is not None
    assert stored["email"] == email
    assert stored["password_hash"].startswith("$argon2")
    assert PASSWORD not in str(stored)

    async def published() -> list[tuple[str | None, Envelope]]:
        return [
            (key, e)
            for key, e in await service.events(UserRegistered.topic)
            if e.data.get("user_id") == user["id"]
        ]

    [(key, envelope)] = await eventually(published, what="user.registered for the new user")
    assert key == user["id"]
    assert envelope.type == "UserRegistered"
    assert envelope.source == "user_service"
    verification_url = envelope.data.pop("verification_url")
    assert envelope.data == {
        "user_id": user["id"],
        "name": "Ada Lovelace",
        "email": email,
        "preferences": ["recommendations", "promotions"],
    }
    assert verification_url.startswith("http://localhost:4000/verify-email/")
    # Published straight away, so nothing is left pending in the outbox.
    assert (await service.repository.users.find_one({"_id": user["id"]}))["outbox"] == []


async def test_preferences_default_to_order_updates(service: UserServiceUnderTest) -> None:
    response = await service.register()
    assert response.status_code == 201, response.text
    assert response.json()["user"]["preferences"] == ["order_updates"]


async def test_registering_an_admin_email_gives_no_admin_role(
    service: UserServiceUnderTest,
) -> None:
    """Whoever registers an ADMIN_EMAILS address first gets a customer's token: the address is
    not theirs until its link is followed (tests/integration/test_identity.py verifies it)."""
    response = await service.register(email=ADMIN_EMAIL)
    assert response.status_code == 201, response.text
    caller = verify_token(response.json()["token"], secret=TEST_JWT_SECRET, issuer="fleet")
    assert caller.roles == ("customer",)
    login = await service.client.post(
        "/auth/login", json={"email": ADMIN_EMAIL, "password": PASSWORD}
    )
    assert verify_token(login.json()["token"], secret=TEST_JWT_SECRET, issuer="fleet").roles == (
        "customer",
    )


async def test_login_with_the_right_password(service: UserServiceUnderTest) -> None:
    email = unique_email()
    registered = (await service.register(email=email)).json()["user"]
    response = await service.client.post(
        "/auth/login", json={"email": f"  {email.upper()} ", "password": PASSWORD}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["user"] == registered
    caller = verify_token(body["token"], secret=TEST_JWT_SECRET, issuer="fleet")
    assert caller.user_id == registered["id"]


async def test_wrong_password_and_unknown_email_fail_alike(service: UserServiceUnderTest) -> None:
    email = unique_email()
    assert (await service.register(email=email)).status_code == 201
    wrong_password = await service.client.post(
        "/auth/login", json={"email": email, "password": PASSWORD + "!"}
    )
    unknown_email = await service.client.post(
        "/auth/login", json={"email": unique_email(), "password": PASSWORD}
    )
    too_long = await service.client.post(
        "/auth/login", json={"email": email, "password": "x" * 10_000}
    )
    expected = {
        "error": {"code": "UNAUTHENTICATED", "message": "The email or password is incorrect."}
    }
    for response in (wrong_password, unknown_email, too_long):
        assert response.status_code == 401
        assert response.json() == expected


@pytest.mark.parametrize(
    ("overrides", "code"),
    [
        pytest.param({"email": "user-{marker}-at-example.com"}, "BAD_USER_INPUT", id="email-no-at"),
        pytest.param({"email": "user-{marker}@"}, "BAD_USER_INPUT", id="email-no-domain"),
        pytest.param({"password": "short"}, "BAD_USER_INPUT", id="short-password"),
        pytest.param({"password": "x" * 129}, "BAD_USER_INPUT", id="long-password"),
        pytest.param({"name": "   "}, "BAD_USER_INPUT", id="blank-name"),
        pytest.param({"name": "x" * 101}, "BAD_USER_INPUT", id="long-name"),
        pytest.param({"preferences": ["spam"]}, "BAD_USER_INPUT", id="unknown-preference"),
        pytest.param({"password": None}, "BAD_USER_INPUT", id="missing-password"),
        pytest.param({"is_admin": True}, "BAD_USER_INPUT", id="unknown-field"),
    ],
)
async def test_bad_registration_stores_and_publishes_nothing(
    service: UserServiceUnderTest, overrides: dict[str, Any], code: str
) -> None:
    marker = uuid.uuid4().hex
    body: dict[str, Any] = {
        "name": f"Bad {marker}",
        "email": unique_email(marker),
        "password": PASSWORD,
    }
    for field, value in overrides.items():
        if value is None:
            body.pop(field)
        else:
            body[field] = value.format(marker=marker) if isinstance(value, str) else value
    users_before = await service.repository.count({})

    response = await service.client.post("/users", json=body)

    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == code
    assert error["message"]
    assert await service.repository.count({}) == users_before
    assert await service.repository.count({"email": {"$regex": marker}}) == 0
    assert await service.events_mentioning(UserRegistered.topic, marker) == []


@pytest.mark.parametrize("variant", [str.lower, str.upper], ids=["same", "case-variant"])
async def test_taken_email_conflicts_and_stores_nothing(
    service: UserServiceUnderTest, variant: Any
) -> None:
    marker = uuid.uuid4().hex
    email = unique_email(marker)
    assert (await service.register(email=email)).status_code == 201
    await eventually(
        lambda: service.events_mentioning(UserRegistered.topic, marker), what="first registration"
    )

    response = await service.register(email=variant(email), name="Someone Else")

    assert response.status_code == 409, response.text
    assert response.json() == {
        "error": {"code": "CONFLICT", "message": "That email is already registered."}
    }
    assert await service.repository.count({"email": email}) == 1
    stored = await service.repository.by_email(email)
    assert stored is not None and stored["name"] == "Ada Lovelace"
    assert len(await service.events_mentioning(UserRegistered.topic, marker)) == 1


async def test_me_returns_the_callers_own_account(service: UserServiceUnderTest) -> None:
    body = (await service.register()).json()
    response = await service.client.get("/users/me", headers=bearer(body["token"]))
    assert response.status_code == 200, response.text
    assert response.json() == body["user"]
    # A bare token is accepted too.
    bare = await service.client.get("/users/me", headers={"Authorization": body["token"]})
    assert bare.json() == body["user"]


def _forged(user_id: str, email: str) -> str:
    return issue_token(
        user_id=user_id,
        email=email,
        roles=["customer", "admin"],
        secret="forged-" + secrets.token_hex(24),
        issuer="fleet",
        ttl_seconds=3600,
    )


def _expired(user_id: str, email: str) -> str:
    return issue_token(
        user_id=user_id,
        email=email,
        roles=["customer"],
        secret=TEST_JWT_SECRET,
        issuer="fleet",
        ttl_seconds=-60,
    )


@pytest.mark.parametrize(
    ("make_headers", "message"),
    [
        pytest.param(lambda uid, email: {}, "A valid token is required.", id="missing"),
        pytest.param(
            lambda uid, email: bearer(_forged(uid, email)), "The token is not valid.", id="forged"
        ),
        pytest.param(
            lambda uid, email: bearer(_expired(uid, email)),
            "The token has expired; log in again.",
            id="expired",
        ),
        pytest.param(
            lambda uid, email: bearer("not.a.token"), "The token is not valid.", id="garbage"
        ),
    ],
)
async def test_bad_tokens_read_and_change_nothing(
    service: UserServiceUnderTest, make_headers: Any, message: str
) -> None:
    registered = (await service.register()).json()["user"]
    headers = make_headers(registered["id"], registered["email"])
    expected = {"error": {"code": "UNAUTHENTICATED", "message": message}}

    me = await service.client.get("/users/me", headers=headers)
    assert me.status_code == 401
    assert me.json() == expected

    update = await service.client.put(
        "/users/me/preferences", headers=headers, json={"preferences": ["promotions"]}
    )
    assert update.status_code == 401
    assert update.json() == expected
    stored = await service.repository.by_id(registered["id"])
    assert stored is not None and stored["preferences"] == ["order_updates"]
    assert await service.events_mentioning(UserPreferencesUpdated.topic, registered["id"]) == []


async def test_me_of_a_user_that_no_longer_exists_is_not_found(
    service: UserServiceUnderTest,
) -> None:
    body = (await service.register()).json()
    await service.repository.users.delete_one({"_id": body["user"]["id"]})
    response = await service.client.get("/users/me", headers=bearer(body["token"]))
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "NOT_FOUND"
    update = await service.client.put(
        "/users/me/preferences", headers=bearer(body["token"]), json={"preferences": []}
    )
    assert update.status_code == 404
    assert await service.events_mentioning(UserPreferencesUpdated.topic, body["user"]["id"]) == []


async def test_preferences_update_stores_and_publishes(service: UserServiceUnderTest) -> None:
    body = (await service.register()).json()
    user_id = body["user"]["id"]

    response = await service.client.put(
        "/users/me/preferences",
        headers=bearer(body["token"]),
        json={"preferences": ["promotions", "recommendations", "promotions"]},
    )

    assert response.status_code == 200, response.text
    assert response.json() == {**body["user"], "preferences": ["promotions", "recommendations"]}
    stored = await service.repository.by_id(user_id)
    assert stored is not None and stored["preferences"] == ["promotions", "recommendations"]

    async def published() -> list[tuple[str | None, Envelope]]:
        return [
            (key, e)
            for key, e in await service.events(UserPreferencesUpdated.topic)
            if e.data.get("user_id") == user_id
        ]

    [(key, envelope)] = await eventually(published, what="user.preferences-updated")
    assert key == user_id
    assert envelope.type == "UserPreferencesUpdated"
    assert envelope.data == {"user_id": user_id, "preferences": ["promotions", "recommendations"]}


async def test_bad_preferences_change_nothing(service: UserServiceUnderTest) -> None:
    body = (await service.register()).json()
    user_id = body["user"]["id"]
    for bad in ({"preferences": ["spam"]}, {"preferences": "promotions"}, {}):
        response = await service.client.put(
            "/users/me/preferences", headers=bearer(body["token"]), json=bad
        )
        assert response.status_code == 422, response.text
        assert response.json()["error"]["code"] == "BAD_USER_INPUT"
    stored = await service.repository.by_id(user_id)
    assert stored is not None and stored["preferences"] == ["order_updates"]
    assert await service.events_mentioning(UserPreferencesUpdated.topic, user_id) == []
