"""The notification service against the real broker and an SMTP server: welcome notifications
and emails, read tracking, idempotency and ownership."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from email.message import Message
from typing import Any

import httpx
import pytest
import pytest_asyncio

from notification_service.main import create_app
from notification_service.repository import NotificationRepository
from notification_service.settings import NotificationSettings
from shared.bus import EventConsumer
from shared.events import (
    EmailVerificationRequested,
    Envelope,
    NotificationRead,
    NotificationRequested,
    PasswordResetRequested,
    UserRegistered,
)
from shared.publisher import EventPublisher
from tests.fixtures.apps import running_service, service_settings
from tests.fixtures.parts import (
    SmtpRecorder,
    eventually,
    read_all,
    signed_token,
)

pytestmark = pytest.mark.integration

PUBLIC_BASE_URL = "https://shop.example.test"
PIXEL = re.compile(
    r'<img src="(?P<url>' + re.escape(PUBLIC_BASE_URL) + r'/track/(?P<token>[^"]+)\.gif)" '
    r'width="1" height="1" alt="">'
)


@dataclass
class NotificationServiceUnderTest:
    client: httpx.AsyncClient
    repository: NotificationRepository
    consumer: EventConsumer
    publisher: EventPublisher
    smtp: SmtpRecorder
    kafka_broker: str


@dataclass
class User:
    user_id: str
    email: str
    name: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


def new_user() -> User:
    user_id = uuid.uuid4().hex
    email = f"user-{user_id}@example.com"
    token = signed_token(user_id, email, ["customer"])
    return User(user_id, email, f"Ada {user_id[:6]}", token)


def registered(user: User, email: str | None = None) -> UserRegistered:
    return UserRegistered(
        user_id=user.user_id, name=user.name, email=email or user.email, preferences=[]
    )


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def service(
    kafka_broker: str, smtp_server: SmtpRecorder
) -> AsyncIterator[NotificationServiceUnderTest]:
    settings = service_settings(
        NotificationSettings,
        kafka_broker,
        smtp_host=smtp_server.host,
        smtp_port=smtp_server.port,
        smtp_mail="fleet@example.test",
        public_base_url=PUBLIC_BASE_URL,
        mail_retry_base_seconds=0.2,
        mail_retry_max_seconds=1.0,
        mail_poll_interval_seconds=0.1,
    )
    test_publisher = EventPublisher(settings.model_copy(update={"service_name": "test"}))
    await test_publisher.start()
    try:
        async with running_service(create_app, settings) as running:
            app, client = running.app, running.client
            consumer: EventConsumer = app.state.runtime.consumers[0]
            await eventually(consumer.assigned, timeout=60, what="the consumer's partitions")
            yield NotificationServiceUnderTest(
                client,
                app.state.service.repository,
                consumer,
                test_publisher,
                smtp_server,
                kafka_broker,
            )
    finally:
        await test_publisher.stop()


async def listed(
    service: NotificationServiceUnderTest, user: User, *, unread_only: bool = True
) -> list[dict[str, Any]]:
    response = await service.client.get(
        "/notifications",
        params={"unread_only": str(unread_only).lower()},
        headers=user.headers,
    )
    assert response.status_code == 200, response.text
    result: list[dict[str, Any]] = response.json()
    return result


def parts_of(message: Message) -> dict[str, str]:
    return {
        part.get_content_type(): part.get_payload(decode=True).decode()  # type: ignore[union-attr]
        for part in message.walk()
        if not part.is_multipart()
    }


async def publish(service: NotificationServiceUnderTest, event: Any) -> Envelope:
    envelope = service.publisher.envelope_for(event)
    await service.publisher.publish_envelope(event.topic, event.key, envelope)
    return envelope


async def test_ready(service: NotificationServiceUnderTest) -> None:
    response = await service.client.get("/ready")
    assert response.status_code == 200, response.text


async def test_welcome_notification_email_and_tracked_read(
    service: NotificationServiceUnderTest,
) -> None:
    user, stranger = new_user(), new_user()
    envelope = await publish(service, registered(user))

    [notification] = await eventually(lambda: listed(service, user), what="welcome notification")
    assert notification == {
        "id": str(envelope.id),
        "userId": user.user_id,
        "type": "other",
        "content": notification["content"],
        "sentAt": notification["sentAt"],
        "read": False,
    }
    assert notification["content"].startswith(f"Welcome to Fleet, {user.name}!")
    assert notification["sentAt"].endswith("Z")
    assert await listed(service, stranger, unread_only=False) == []

    [mail] = await eventually(lambda: service.smtp.to(user.email), what="the welcome email")
    assert mail["Subject"] == "Welcome to Fleet"
    assert mail["From"] == "Fleet <fleet@example.test>"
    assert mail.get_content_type() == "multipart/alternative"
    parts = parts_of(mail)
    assert f"Welcome to Fleet, {user.name}!" in parts["text/plain"]
    pixel = PIXEL.search(parts["text/html"])
    assert pixel is not None, parts["text/html"]

    # The server has the mail before the sender has its answer and marks the mail sent.
    async def marked_sent() -> dict[str, Any] | None:
        stored = await service.repository.get(str(envelope.id))
        return stored if stored and stored["delivery"]["status"] == "sent" else None

    stored = await eventually(marked_sent, what="the mail marked sent")
    assert stored["delivery"]["attempts"] == 1
    assert stored["delivery"]["sent_at"] is not None

    token = pixel["token"]
    tampered = token[:-1] + ("A" if token[-1] != "A" else "B")
    for bad in (tampered, "garbage", token.split(".")[0]):
        response = await service.client.get(f"/track/{bad}.gif")
        assert response.status_code == 200
        assert response.headers["content-type"] == "image/gif"
        assert response.content.startswith(b"GIF89a")
    assert [n["id"] for n in await listed(service, user)] == [str(envelope.id)]

    response = await service.client.get(f"/track/{token}.gif")
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/gif"
    assert "no-store" in response.headers["cache-control"]
    assert response.content.startswith(b"GIF89a")
    assert await listed(service, user) == []
    assert (await listed(service, user, unread_only=False))[0]["read"] is True
    # The notification announced itself: its outbox was relayed.
    assert (await service.repository.notifications.find_one({"_id": str(envelope.id)}))[
        "outbox"
    ] == []


async def test_a_redelivered_event_stores_once_and_emails_once(
    service: NotificationServiceUnderTest,
) -> None:
    user = new_user()
    event = registered(user)
    envelope = service.publisher.envelope_for(event)
    for _ in range(2):
        await service.publisher.publish_envelope(event.topic, event.key, envelope)
    # Same key, same partition: once this later event is stored, both copies were handled.
    sentinel_email = f"sentinel-{user.user_id}@example.com"
    await publish(service, registered(user, email=sentinel_email))
    await eventually(lambda: service.smtp.to(sentinel_email), what="the sentinel email")

    notifications = await listed(service, user)
    assert len(notifications) == 2
    assert sum(n["id"] == str(envelope.id) for n in notifications) == 1
    assert len(service.smtp.to(user.email)) == 1
    stored = await service.repository.get(str(envelope.id))
    assert stored is not None and stored["delivery"]["attempts"] == 1


async def test_marking_read_is_for_the_owner_only(service: NotificationServiceUnderTest) -> None:
    user, stranger = new_user(), new_user()
    envelope = await publish(service, registered(user))
    await eventually(lambda: listed(service, user), what="welcome notification")
    path = f"/notifications/{envelope.id}/read"

    response = await service.client.post(path, headers=stranger.headers)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "NOT_FOUND"
    assert len(await listed(service, user)) == 1

    for _ in range(2):  # idempotent
        response = await service.client.post(path, headers=user.headers)
        assert response.status_code == 200, response.text
        assert response.json()["read"] is True
        assert response.json()["id"] == str(envelope.id)
    assert await listed(service, user) == []

    missing = await service.client.post(f"/notifications/{uuid.uuid4()}/read", headers=user.headers)
    assert missing.status_code == 404

    # Read twice, announced once: caches elsewhere learn of the first read only.
    announced = [
        Envelope.from_bytes(r.value)
        for r in await read_all(service.kafka_broker, NotificationRead.topic)
        if r.key == user.user_id.encode()
    ]
    assert [(a.type, a.data["notification_id"]) for a in announced] == [
        ("NotificationRead", str(envelope.id))
    ]


async def test_requests_need_a_valid_token(service: NotificationServiceUnderTest) -> None:
    assert (await service.client.get("/notifications")).status_code == 401
    forged = {"Authorization": "Bearer " + new_user().token[:-2] + "xx"}
    response = await service.client.get("/notifications", headers=forged)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "UNAUTHENTICATED"


async def test_requested_notifications_email_only_when_asked(
    service: NotificationServiceUnderTest,
) -> None:
    user = new_user()
    quiet = await publish(
        service,
        NotificationRequested(
            user_id=user.user_id,
            type="order_update",
            content="Your order shipped.",
            email=user.email,
        ),
    )
    loud = await publish(
        service,
        NotificationRequested(
            user_id=user.user_id,
            type="promotion",
            content="Lamps are 20% off.",
            email=user.email,
            send_email=True,
            subject="Lamp sale",
        ),
    )

    async def both() -> list[dict[str, Any]] | None:
        found = await listed(service, user)
        return found if len(found) == 2 else None

    notifications = await eventually(both, what="both requested notifications")
    assert [n["id"] for n in notifications] == [str(loud.id), str(quiet.id)]  # newest first
    assert [n["type"] for n in notifications] == ["promotion", "order_update"]

    [mail] = await eventually(lambda: service.smtp.to(user.email), what="the promotion email")
    assert mail["Subject"] == "Lamp sale"
    assert "Lamps are 20% off." in parts_of(mail)["text/plain"]
    quiet_stored = await service.repository.get(str(quiet.id))
    assert quiet_stored is not None and quiet_stored["delivery"]["status"] == "skipped"


async def test_an_email_failure_is_recorded_and_does_not_block(
    service: NotificationServiceUnderTest,
) -> None:
    user = new_user()
    # Refused: the failure is recorded and the mail stays pending for a retry.
    service.smtp.refuse = True
    try:
        envelope = await publish(service, registered(user))
        stored = await eventually(
            lambda: _with_error(service, str(envelope.id)), what="a recorded failed attempt"
        )
        assert stored["delivery"]["status"] == "pending"
        assert "451" in stored["delivery"]["last_error"]
        assert [n["id"] for n in await listed(service, user)] == [str(envelope.id)]
        # The consumer moved on: a later event for the same partition is stored meanwhile.
        later = f"later-{user.user_id}@example.com"
        later_envelope = await publish(service, registered(user, email=later))
        await eventually(
            lambda: service.repository.get(str(later_envelope.id)), what="the next notification"
        )
    finally:
        service.smtp.refuse = False
    await eventually(lambda: service.smtp.to(later), what="the next email, once SMTP is back")
    await eventually(lambda: service.smtp.to(user.email), what="the retried email")
    assert len(service.smtp.to(user.email)) == 1


async def _with_error(
    service: NotificationServiceUnderTest, notification_id: str
) -> dict[str, Any] | None:
    stored = await service.repository.get(notification_id)
    return stored if stored and stored["delivery"]["last_error"] else None


async def test_bad_input_is_a_clear_4xx(service: NotificationServiceUnderTest) -> None:
    user = new_user()
    response = await service.client.get(
        "/notifications", params={"unread_only": "maybe"}, headers=user.headers
    )
    assert response.status_code == 422
    assert "unread_only" in response.json()["error"]["message"]

    for bad_id in ("not-a-uuid", "x" * 2000, "%24where", "{}"):
        response = await service.client.post(f"/notifications/{bad_id}/read", headers=user.headers)
        assert response.status_code == 404, bad_id
        assert response.json()["error"]["code"] == "NOT_FOUND"


async def test_links_go_into_the_email_only_and_are_not_kept_once_sent(
    service: NotificationServiceUnderTest,
) -> None:
    """Issue 13: the welcome email carries the verification link; a resend and a reset request
    are mailed whatever the preferences; the in-app content never holds a link, and the stored
    copy of a link is dropped once its mail went out."""
    user = new_user()
    base = "http://gateway.test"
    welcome = await publish(
        service,
        UserRegistered(
            user_id=user.user_id,
            name=user.name,
            email=user.email,
            preferences=[],
            verification_url=f"{base}/verify-email/welcome-token",
        ),
    )
    resend = await publish(
        service,
        EmailVerificationRequested(
            user_id=user.user_id,
            name=user.name,
            email=user.email,
            verification_url=f"{base}/verify-email/resent-token",
        ),
    )
    reset = await publish(
        service,
        PasswordResetRequested(
            user_id=user.user_id,
            name=user.name,
            email=user.email,
            reset_url=f"{base}/reset-password/reset-token",
        ),
    )

    async def three() -> list[Any] | None:
        mails = service.smtp.to(user.email)
        return mails if len(mails) == 3 else None

    mails = {m["Subject"]: parts_of(m) for m in await eventually(three, what="the three emails")}
    assert set(mails) == {
        "Welcome to Fleet",
        "Confirm your email address",
        "Reset your Fleet password",
    }
    expected = {
        "Welcome to Fleet": "/verify-email/welcome-token",
        "Confirm your email address": "/verify-email/resent-token",
        "Reset your Fleet password": "/reset-password/reset-token",
    }
    for subject, path in expected.items():
        assert f'<a href="{base}{path}">' in mails[subject]["text/html"]
        assert f"{base}{path}" in mails[subject]["text/plain"]
    listed_contents = [n["content"] for n in await listed(service, user, unread_only=False)]
    assert len(listed_contents) == 3
    assert not [c for c in listed_contents if "token" in c or base in c]

    async def settled() -> list[dict[str, Any]] | None:
        stored = [await service.repository.get(str(e.id)) for e in (welcome, resend, reset)]
        done = all(s and s["delivery"]["status"] == "sent" for s in stored)
        return stored if done else None  # type: ignore[return-value]

    for stored in await eventually(settled, what="the three mails marked sent"):
        assert stored["link"] is None
