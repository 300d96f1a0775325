"""Handlers of the topics the notification service consumes (group `notification_service`).

In: `user.registered` (welcome notification and email), `notification.requested`.
Out: `notification.created`, through the outbox of the stored notification.

Idempotent: a notification's id is its event's id, so a redelivered event stores nothing new.
Email is not sent here: a notification that wants one is stored with delivery `pending` and the
background sender (`sender.py`) delivers it, retrying with backoff while SMTP fails.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from notification_service import domain, emails
from notification_service.domain import DeliveryStatus
from notification_service.mailer import Mailer
from notification_service.repository import NotificationRepository
from notification_service.settings import NotificationSettings
from shared.bus import EventPublisher, Handler
from shared.events.envelope import Envelope
from shared.events.models import (
    NotificationCreated,
    NotificationRequested,
    NotificationType,
    UserRegistered,
)
from shared.logging import get_logger
from shared.outbox import OutboxRelay, outbox_entry

log = get_logger(__name__)

CONSUMER_GROUP = "notification_service"


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


@dataclass
class NotificationHandlers:
    """Store and announce; mail is left pending for the background sender."""

    settings: NotificationSettings
    repository: NotificationRepository
    publisher: EventPublisher
    relay: OutboxRelay
    mailer: Mailer
    wake_sender: Callable[[], None]

    def handlers(self) -> dict[str, Handler]:
        """The consumer's topic -> handler map."""
        return {
            UserRegistered.topic: self.on_user_registered,
            NotificationRequested.topic: self.on_notification_requested,
        }

    async def on_user_registered(self, envelope: Envelope, event: UserRegistered) -> None:
        """Welcome the new user, in the app and by email (whatever the preferences)."""
        await self._handle(
            envelope,
            _Incoming(
                user_id=event.user_id,
                kind=domain.WELCOME_TYPE,
                content=domain.welcome_content(event.name),
                email=str(event.email),
                subject=emails.WELCOME_SUBJECT,
                wants_email=True,
                welcome_name=event.name,
            ),
        )

    async def on_notification_requested(
        self, envelope: Envelope, event: NotificationRequested
    ) -> None:
        """Store what another service asked for; email it if asked and addressed."""
        await self._handle(
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

    async def _handle(self, envelope: Envelope, incoming: _Incoming) -> None:
        notification_id = domain.notification_id_for(envelope.id)
        now = datetime.now(UTC)
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
            sent_at=now,
            welcome_name=incoming.welcome_name,
            unsubscribe_url=incoming.unsubscribe_url,
        )
        created = NotificationCreated(
            notification_id=notification_id,
            user_id=incoming.user_id,
            type=incoming.kind,
            content=incoming.content,
            sent_at=notification["sent_at"],
        )
        entry = outbox_entry(self.publisher, created)
        if not await self.repository.insert_new(notification, [entry]):
            log.info("notification already stored", notification_id=notification_id)
            return
        log.info("notification stored", notification_id=notification_id, type=incoming.kind)
        await self.relay.flush_document(self.repository.notifications, notification_id)
        if notification["delivery"]["status"] == DeliveryStatus.PENDING:
            # The sender claims it; the consumer never waits on SMTP.
            self.wake_sender()
