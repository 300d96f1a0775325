"""Handlers of the topics the notification service consumes (group `notification_service`).

In: `user.registered` (welcome notification and email, with the verification link),
`user.email-verification-requested` and `user.password-reset-requested` (a notification saying
so; the link goes only into the email), `notification.requested`.
Out: `notification.created`, through the outbox of the stored notification.

Idempotent: a notification's id is its event's id, so a redelivered event stores nothing new.
Events come in batches (one partition's fetch): one insert, one publish, one outbox write each.
Email is not sent here: a notification that wants one is stored with delivery `pending` and the
background sender (`sender.py`) delivers it, retrying with backoff while SMTP fails.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from notification_service import domain, emails
from notification_service.domain import DeliveryStatus
from notification_service.mailer import Mailer
from notification_service.repository import NotificationRepository
from notification_service.settings import NotificationSettings
from shared import tracing
from shared.bus import Handler, Received, batched
from shared.events.envelope import Envelope
from shared.events.models import (
    EmailVerificationRequested,
    NotificationCreated,
    NotificationRequested,
    NotificationType,
    PasswordResetRequested,
    UserRegistered,
)
from shared.logging import get_logger
from shared.outbox import OutboxRelay, outbox_entry
from shared.publisher import EventPublisher
from shared.services import NOTIFICATION
from shared.tracing import event_scope

log = get_logger(__name__)

CONSUMER_GROUP = NOTIFICATION.name
_STAMP_STEP = timedelta(milliseconds=1)  # stored dates keep milliseconds


@dataclass(frozen=True, slots=True)
class _Incoming:
    """A notification to store, as any consumed event describes it."""

    user_id: str
    kind: NotificationType
    content: str
    email: str | None
    subject: str | None
    wants_email: bool
    welcome_name: str | None = None
    unsubscribe_url: str | None = None
    link: str | None = None
    link_kind: str | None = None


@dataclass
class NotificationHandlers:
    """Store and announce; mail is left pending for the background sender."""

    settings: NotificationSettings
    repository: NotificationRepository
    publisher: EventPublisher
    relay: OutboxRelay
    mailer: Mailer
    wake_sender: Callable[[], None]
    _last_stamp: datetime = field(default=datetime.min.replace(tzinfo=UTC), init=False)

    def handlers(self) -> dict[str, Handler]:
        """The consumer's topic -> handler map; every topic is stored in batches."""
        limit = self.settings.consumer_batch_max_records
        return {
            UserRegistered.topic: batched(self.on_users_registered, max_records=limit),
            EmailVerificationRequested.topic: batched(self.on_links_requested, max_records=limit),
            PasswordResetRequested.topic: batched(self.on_links_requested, max_records=limit),
            NotificationRequested.topic: batched(
                self.on_notifications_requested, max_records=limit
            ),
        }

    async def on_users_registered(self, received: Sequence[Received]) -> None:
        """Welcome new users, in the app and by email (whatever the preferences)."""
        await self._store(
            [
                (
                    envelope,
                    _Incoming(
                        user_id=event.user_id,
                        kind=domain.WELCOME_TYPE,
                        content=domain.welcome_content(event.name),
                        email=str(event.email),
                        subject=emails.WELCOME_SUBJECT,
                        wants_email=True,
                        welcome_name=event.name,
                        link=event.verification_url,
                        link_kind=emails.VERIFY_LINK if event.verification_url else None,
                    ),
                )
                for envelope, event in received
            ]
        )

    async def on_links_requested(self, received: Sequence[Received]) -> None:
        """Mail a verification or password reset link (whatever the preferences); the in-app
        notification only says that it was sent."""
        await self._store([(envelope, _link_notification(event)) for envelope, event in received])

    async def on_notifications_requested(self, received: Sequence[Received]) -> None:
        """Store what other services asked for; email those asked for and addressed."""
        await self._store(
            [
                (
                    envelope,
                    _Incoming(
                        user_id=event.user_id,
                        kind=event.type,
                        content=event.content,
                        email=str(event.email) if event.email else None,
                        subject=event.subject,
                        wants_email=domain.wants_email(event),
                        unsubscribe_url=event.unsubscribe_url,
                    ),
                )
                for envelope, event in received
            ]
        )

    async def _store(self, batch: list[tuple[Envelope, _Incoming]]) -> None:
        """One insert for the batch, one publish of its notification.created events (every
        acknowledgement awaited together), one write clearing their outbox entries. A crash or
        a broker outage between the steps leaves the entries to the outbox relay."""
        now = datetime.now(UTC)
        prepared = [
            self._prepare(envelope, incoming, now, sent_at)
            for (envelope, incoming), sent_at in zip(
                batch, self._stamps(now, len(batch)), strict=True
            )
        ]
        stored = await self.repository.insert_new_many(
            [(notification, [entry]) for notification, entry in prepared]
        )
        new = [(n, entry) for n, entry in prepared if n["_id"] in stored]
        log.info("notifications stored", count=len(new), already_stored=len(prepared) - len(new))
        for notification, _entry in new:
            log.debug(
                "notification stored",
                notification_id=notification["_id"],
                type=notification["type"],
            )
        if not new:
            return
        await self.relay.flush_entries(
            self.repository.notifications, {n["_id"]: [entry] for n, entry in new}
        )
        if any(n["delivery"]["status"] == DeliveryStatus.PENDING for n, _ in new):
            # The sender claims them; the consumer never waits on SMTP.
            self.wake_sender()

    def _stamps(self, now: datetime, count: int) -> list[datetime]:
        """`count` send times from `now`, each a stored millisecond after the one before (and
        after the previous batch's), so a partition's order survives in "newest first"."""
        now = now.replace(microsecond=now.microsecond // 1000 * 1000)
        first = max(now, self._last_stamp + _STAMP_STEP)
        stamps = [first + _STAMP_STEP * i for i in range(count)]
        if stamps:
            self._last_stamp = stamps[-1]
        return stamps

    def _prepare(
        self, envelope: Envelope, incoming: _Incoming, now: datetime, sent_at: datetime
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """The notification to store (mail due `now`) and the outbox entry announcing it."""
        notification_id = domain.notification_id_for(envelope.id)
        notification = domain.new_notification(
            notification_id=notification_id,
            user_id=incoming.user_id,
            kind=incoming.kind,
            content=incoming.content,
            email=incoming.email,
            subject=incoming.subject,
            delivery=domain.initial_delivery(
                wants=incoming.wants_email, mail_enabled=self.mailer.enabled, now=now
            ),
            sent_at=sent_at,
            welcome_name=incoming.welcome_name,
            unsubscribe_url=incoming.unsubscribe_url,
            link=incoming.link,
            link_kind=incoming.link_kind,
        )
        created = NotificationCreated(
            notification_id=notification_id,
            user_id=incoming.user_id,
            type=incoming.kind,
            content=incoming.content,
            sent_at=notification["sent_at"],
        )
        with event_scope(envelope):
            # The announcement carries the correlation id of the event that caused it, and the
            # mail the trace of that event (the sender continues it).
            entry = outbox_entry(self.publisher, created)
            tracing.remember(notification)
        return notification, entry


def _link_notification(event: object) -> _Incoming:
    """What a verification or reset request stores: a sentence in the app, the link by mail."""
    if isinstance(event, PasswordResetRequested):
        kind, url, content = emails.RESET_LINK, event.reset_url, domain.RESET_CONTENT
    else:
        assert isinstance(event, EmailVerificationRequested)
        kind, url, content = emails.VERIFY_LINK, event.verification_url, domain.VERIFY_CONTENT
    return _Incoming(
        user_id=event.user_id,
        kind=domain.LINK_TYPE,
        content=content,
        email=str(event.email),
        subject=emails.LINK_EMAILS[kind][0],
        wants_email=True,
        link=url,
        link_kind=kind,
    )
