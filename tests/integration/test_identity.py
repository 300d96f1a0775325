"""The user service's identity (issue 13) against the real broker: verified email and the admin
role it unlocks, rotating refresh tokens, logout, password change and reset, operator grants,
and the migration of users stored before all this."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import pytest_asyncio

from shared.auth import verify_token
from shared.events import (
    EmailVerificationRequested,
    Envelope,
    PasswordResetRequested,
    SessionsRevoked,
    UserRegistered,
)
from shared.links import LinkPurpose, LinkSigner
from tests.fixtures.apps import running_service, service_settings
from tests.fixtures.parts import TEST_JWT_SECRET, eventually, read_all
from user_service.main import create_app
from user_service.repository import UserRepository
from user_service.settings import UserSettings

pytestmark = pytest.mark.integration

ADMIN_EMAIL = f"id-admin-{uuid.uuid4().hex[:8]}@example.com"
PASSWORD = "correct horse battery"
NEW_PASSWORD = "a brand new passphrase"
MAX_SESSIONS = 3


@dataclass
class Service:
    client: httpx.AsyncClient
    repository: UserRepository
    broker: str

    async def register(self, email: str | None = None) -> dict[str, Any]:
        body = {"name": "Ada", "email": email or unique_email(), "password": PASSWORD}
        response = await self.client.post("/users", json=body)
        assert response.status_code == 201, response.text
        return dict(response.json())

    async def login(self, email: str, password: str = PASSWORD) -> httpx.Response:
        return await self.client.post("/auth/login", json={"email": email, "password": password})

    async def refresh(self, refresh_token: str) -> httpx.Response:
        return await self.client.post("/auth/refresh", json={"refreshToken": refresh_token})

    async def event(self, topic: str, user_id: str, count: int = 1) -> list[Envelope]:
        """The first `count` events of the user on the topic, once there are that many."""

        async def found() -> list[Envelope]:
            records = await read_all(self.broker, topic)
            mine = [Envelope.from_bytes(r.value) for r in records]
            mine = [e for e in mine if e.data.get("user_id") == user_id]
            return mine if len(mine) >= count else []

        return list(await eventually(found, what=f"{count} {topic} of {user_id}"))[:count]


def unique_email() -> str:
    return f"id-{uuid.uuid4().hex}@example.com"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def roles_of(token: str) -> tuple[str, ...]:
    return verify_token(token, secret=TEST_JWT_SECRET, issuer="fleet").roles


def token_of(url: str) -> str:
    return url.rsplit("/", 1)[1]


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def service(kafka_broker: str) -> AsyncIterator[Service]:
    settings = service_settings(
        UserSettings, kafka_broker, admin_emails=ADMIN_EMAIL, max_sessions_per_user=MAX_SESSIONS
    )
    async with running_service(create_app, settings) as running:
        app, client = running.app, running.client
        yield Service(client, app.state.service.repository, kafka_broker)


async def verification_url(service: Service, user_id: str) -> str:
    [registered] = await service.event(UserRegistered.topic, user_id)
    return str(registered.data["verification_url"])


async def verified_admin(service: Service) -> dict[str, Any]:
    """A login of ADMIN_EMAIL with the admin role (registered and verified here if no test
    before did)."""
    if await service.repository.by_email(ADMIN_EMAIL) is None:
        await service.register(ADMIN_EMAIL)
    user = await service.repository.by_email(ADMIN_EMAIL)
    assert user is not None
    if not user.get("email_verified"):
        url = await verification_url(service, user["_id"])
        await service.client.post("/auth/verify-email", json={"token": token_of(url)})
    admin = dict((await service.login(ADMIN_EMAIL)).json())
    assert roles_of(admin["token"]) == ("customer", "admin")
    return admin


async def test_the_welcome_link_verifies_once_and_then_a_listed_address_is_admin(
    service: Service,
) -> None:
    body = await service.register(ADMIN_EMAIL)
    user_id = body["user"]["id"]
    assert roles_of(body["token"]) == ("customer",)
    url = await verification_url(service, user_id)
    assert url.startswith("http://localhost:4000/verify-email/")

    verified = await service.client.post("/auth/verify-email", json={"token": token_of(url)})
    assert verified.status_code == 200, verified.text
    assert verified.json()["emailVerified"] is True
    # The token issued before still carries no admin role; the next one does.
    assert roles_of(body["token"]) == ("customer",)
    refreshed = await service.refresh(body["refreshToken"])
    assert roles_of(refreshed.json()["token"]) == ("customer", "admin")
    assert roles_of((await service.login(ADMIN_EMAIL)).json()["token"]) == ("customer", "admin")
    # Used: refused.
    again = await service.client.post("/auth/verify-email", json={"token": token_of(url)})
    assert again.status_code == 422
    assert again.json()["error"]["code"] == "BAD_USER_INPUT"


async def test_a_verified_address_not_listed_stays_a_customer(service: Service) -> None:
    body = await service.register()
    url = await verification_url(service, body["user"]["id"])
    assert (
        await service.client.post("/auth/verify-email", json={"token": token_of(url)})
    ).status_code == 200
    assert roles_of((await service.login(body["user"]["email"])).json()["token"]) == ("customer",)


async def test_a_resend_mails_a_new_link_and_the_old_one_stops_working(service: Service) -> None:
    body = await service.register()
    user_id = body["user"]["id"]
    first = await verification_url(service, user_id)
    answer = await service.client.post(
        "/users/me/verification-requests", headers=bearer(body["token"])
    )
    assert answer.status_code == 200, answer.text
    [requested] = await service.event(EmailVerificationRequested.topic, user_id)
    second = str(requested.data["verification_url"])
    assert requested.data["email"] == body["user"]["email"]
    old = await service.client.post("/auth/verify-email", json={"token": token_of(first)})
    assert old.status_code == 422
    new = await service.client.post("/auth/verify-email", json={"token": token_of(second)})
    assert new.status_code == 200
    done = await service.client.post(
        "/users/me/verification-requests", headers=bearer(body["token"])
    )
    assert done.json() == {"message": "Your email address is already verified."}


async def test_expired_foreign_and_other_purpose_links_are_refused(service: Service) -> None:
    body = await service.register()
    user_id = body["user"]["id"]
    stored = await service.repository.by_id(user_id)
    assert stored is not None
    links = LinkSigner(TEST_JWT_SECRET)
    jti = stored["verify_jti"]
    expired = links.sign(LinkPurpose.VERIFY_EMAIL, user_id, ttl_seconds=-1, token_id=jti)
    foreign = LinkSigner("x" * 40).sign(
        LinkPurpose.VERIFY_EMAIL, user_id, ttl_seconds=60, token_id=jti
    )
    reset = links.sign(LinkPurpose.RESET_PASSWORD, user_id, ttl_seconds=60, token_id=jti)
    for token in (expired, foreign, reset, body["token"], "garbage"):
        answer = await service.client.post("/auth/verify-email", json={"token": token})
        assert answer.status_code == 422, token
    # A verification link cannot set a password either.
    valid = links.sign(LinkPurpose.VERIFY_EMAIL, user_id, ttl_seconds=60, token_id=jti)
    answer = await service.client.post(
        "/auth/password-reset", json={"token": valid, "newPassword": NEW_PASSWORD}
    )
    assert answer.status_code == 422


async def test_refresh_rotates_and_a_reused_refresh_token_ends_the_session(
    service: Service,
) -> None:
    body = await service.register()
    user_id = body["user"]["id"]
    first = await service.refresh(body["refreshToken"])
    assert first.status_code == 200, first.text
    rotated = first.json()
    assert rotated["refreshToken"] != body["refreshToken"]
    session_id = verify_token(rotated["token"], secret=TEST_JWT_SECRET, issuer="fleet").session_id
    assert (
        session_id == verify_token(body["token"], secret=TEST_JWT_SECRET, issuer="fleet").session_id
    )
    stored = await service.repository.by_id(user_id)
    assert stored is not None
    assert rotated["refreshToken"].rsplit(".", 1)[1] not in str(stored)  # stored hashed

    reused = await service.refresh(body["refreshToken"])
    assert reused.status_code == 401
    assert "already used" in reused.json()["error"]["message"]
    # The whole family is gone: the newest refresh token is refused too.
    assert (await service.refresh(rotated["refreshToken"])).status_code == 401
    [revoked] = await service.event(SessionsRevoked.topic, user_id)
    assert revoked.data["session_ids"] == [session_id]


@pytest.mark.parametrize("token", ["", "x", "a.b.c", "u.s.secret"])
async def test_a_made_up_refresh_token_is_refused(service: Service, token: str) -> None:
    answer = await service.refresh(token)
    assert answer.status_code == 401
    assert answer.json()["error"]["code"] == "UNAUTHENTICATED"


async def test_logout_ends_only_that_session(service: Service) -> None:
    body = await service.register()
    other = (await service.login(body["user"]["email"])).json()
    answer = await service.client.post("/auth/logout", headers=bearer(body["token"]))
    assert answer.json() == {"loggedOut": True}
    assert (await service.refresh(body["refreshToken"])).status_code == 401
    assert (await service.refresh(other["refreshToken"])).status_code == 200
    again = await service.client.post("/auth/logout", headers=bearer(body["token"]))
    assert again.json() == {"loggedOut": False}
    [revoked] = await service.event(SessionsRevoked.topic, body["user"]["id"])
    sid = verify_token(body["token"], secret=TEST_JWT_SECRET, issuer="fleet").session_id
    assert revoked.data["session_ids"] == [sid]


async def test_changing_the_password_ends_every_earlier_session(service: Service) -> None:
    body = await service.register()
    email = body["user"]["email"]
    second = (await service.login(email)).json()
    wrong = await service.client.put(
        "/users/me/password",
        json={"currentPassword": "not it at all", "newPassword": NEW_PASSWORD},
        headers=bearer(body["token"]),
    )
    assert wrong.status_code == 401
    short = await service.client.put(
        "/users/me/password",
        json={"currentPassword": PASSWORD, "newPassword": "short"},
        headers=bearer(body["token"]),
    )
    assert short.status_code == 422
    changed = await service.client.put(
        "/users/me/password",
        json={"currentPassword": PASSWORD, "newPassword": NEW_PASSWORD},
        headers=bearer(body["token"]),
    )
    assert changed.status_code == 200, changed.text
    fresh = changed.json()
    for old in (body["refreshToken"], second["refreshToken"]):
        assert (await service.refresh(old)).status_code == 401
    assert (await service.refresh(fresh["refreshToken"])).status_code == 200
    assert (await service.login(email)).status_code == 401
    assert (await service.login(email, NEW_PASSWORD)).status_code == 200
    [revoked] = await service.event(SessionsRevoked.topic, body["user"]["id"])
    assert len(revoked.data["session_ids"]) == 2


async def test_a_reset_link_sets_a_new_password_once_and_ends_every_session(
    service: Service,
) -> None:
    body = await service.register()
    email, user_id = body["user"]["email"], body["user"]["id"]
    known = await service.client.post("/auth/password-reset-requests", json={"email": email})
    unknown = await service.client.post(
        "/auth/password-reset-requests", json={"email": unique_email()}
    )
    assert known.status_code == unknown.status_code == 200
    assert known.json() == unknown.json()
    [requested] = await service.event(PasswordResetRequested.topic, user_id)
    url = str(requested.data["reset_url"])
    assert url.startswith("http://localhost:4000/reset-password/")

    reset = await service.client.post(
        "/auth/password-reset", json={"token": token_of(url), "newPassword": NEW_PASSWORD}
    )
    assert reset.status_code == 200, reset.text
    assert reset.json()["refreshToken"]
    assert (await service.refresh(body["refreshToken"])).status_code == 401
    assert (await service.login(email, NEW_PASSWORD)).status_code == 200
    again = await service.client.post(
        "/auth/password-reset", json={"token": token_of(url), "newPassword": PASSWORD}
    )
    assert again.status_code == 422
    assert (await service.login(email, PASSWORD)).status_code == 401


async def test_a_password_change_voids_a_pending_reset_link(service: Service) -> None:
    body = await service.register()
    email, user_id = body["user"]["email"], body["user"]["id"]
    await service.client.post("/auth/password-reset-requests", json={"email": email})
    [requested] = await service.event(PasswordResetRequested.topic, user_id)
    changed = await service.client.put(
        "/users/me/password",
        json={"currentPassword": PASSWORD, "newPassword": NEW_PASSWORD},
        headers=bearer(body["token"]),
    )
    assert changed.status_code == 200
    answer = await service.client.post(
        "/auth/password-reset",
        json={"token": token_of(str(requested.data["reset_url"])), "newPassword": PASSWORD},
    )
    assert answer.status_code == 422


async def test_only_a_current_admin_grants_and_revokes_and_the_target_sessions_end(
    service: Service,
) -> None:
    customer = await service.register()
    target = await service.register()
    target_email = target["user"]["email"]
    path = f"/admin/admins/{target_email}"
    refused = await service.client.put(path, headers=bearer(customer["token"]))
    assert refused.status_code == 403
    admin = await verified_admin(service)

    granted = await service.client.put(path, headers=bearer(admin["token"]))
    assert granted.status_code == 200, granted.text
    assert (await service.refresh(target["refreshToken"])).status_code == 401
    assert roles_of((await service.login(target_email)).json()["token"]) == ("customer", "admin")
    revoked = await service.client.delete(path, headers=bearer(admin["token"]))
    assert revoked.status_code == 200
    assert roles_of((await service.login(target_email)).json()["token"]) == ("customer",)
    missing = await service.client.put(
        f"/admin/admins/{unique_email()}", headers=bearer(admin["token"])
    )
    assert missing.status_code == 404
    # An admin whose session ended can no longer grant anything.
    await service.client.post("/auth/logout", headers=bearer(admin["token"]))
    ended = await service.client.put(path, headers=bearer(admin["token"]))
    assert ended.status_code == 403


async def test_users_stored_before_are_migrated_once(service: Service) -> None:
    user_id = uuid.uuid4().hex
    email = unique_email()
    body = await service.register()  # any stored hash of PASSWORD will do
    stored = await service.repository.by_id(body["user"]["id"])
    assert stored is not None
    await service.repository.users.insert_one(
        {
            "_id": user_id,
            "name": "Old",
            "email": email,
            "password_hash": stored["password_hash"],
            "preferences": ["order_updates"],
            "order_status": "none",
            "orders": [],
            "purchase_history": [],
            "created_at": datetime.now(UTC),
            "outbox": [],
        }
    )
    assert await service.repository.migrate_identity() >= 1
    assert await service.repository.migrate_identity() == 0
    migrated = await service.repository.by_id(user_id)
    assert migrated is not None
    assert (migrated["roles"], migrated["email_verified"]) == (["customer"], False)
    login = await service.login(email)
    assert login.status_code == 200, login.text
    assert login.json()["user"]["emailVerified"] is False
    assert (await service.refresh(login.json()["refreshToken"])).status_code == 200


async def test_a_login_past_the_session_cap_ends_the_oldest(service: Service) -> None:
    body = await service.register()
    email, user_id = body["user"]["email"], body["user"]["id"]
    logins = [(await service.login(email)).json() for _ in range(MAX_SESSIONS)]
    stored = await service.repository.by_id(user_id)
    assert stored is not None
    assert len(stored["sessions"]) == MAX_SESSIONS
    # The registration's session was the oldest: ended, and announced.
    assert (await service.refresh(body["refreshToken"])).status_code == 401
    for login in logins:
        assert (await service.refresh(login["refreshToken"])).status_code == 200
    [revoked] = await service.event(SessionsRevoked.topic, user_id)
    first = verify_token(body["token"], secret=TEST_JWT_SECRET, issuer="fleet").session_id
    assert revoked.data["session_ids"] == [first]
