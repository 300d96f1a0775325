"""Handlers of the topics the notification service consumes (group `notification_service`):
each turns a batch of events into the notifications they ask for and hands it to the service.

In: `user.registered` (welcome notification and email, with the verification link),
`user.email-verification-requested` and `user.password-reset-requested` (a notification saying
so; the link goes only into the email), `notification.requested`.
Out (from `service.py`): `notification.created`, through the outbox of the stored notification.

Events come in batches (one partition's fetch): each batch is one call of the service (one
insert, one publish, one outbox write).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from notification_service import domain, emails
from notification_service.domain import IncomingNotification
from notification_service.service import Notifications
from shared.bus import Handler, Received, batched
from shared.events.models import (
    EmailVerificationRequested,
    NotificationRequested,
    PasswordResetRequested,
    UserRegistered,
)
from shared.services import NOTIFICATION

CONSUMER_GROUP = NOTIFICATION.name


@dataclass
class NotificationHandlers:
    """The consumer's handlers: parse a batch, store it through the service."""

    service: Notifications

    def handlers(self) -> dict[str, Handler]:
        """The consumer's topic -> handler map; every topic is stored in batches."""
        limit = self.service.settings.consumer_batch_max_records
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
        await self.service.store(
            [
                (
                    envelope,
                    IncomingNotification(
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
        await self.service.store(
            [(envelope, _link_notification(event)) for envelope, event in received]
        )

    async def on_notifications_requested(self, received: Sequence[Received]) -> None:
        """Store what other services asked for; email those asked for and addressed."""
        await self.service.store(
            [
                (
                    envelope,
                    IncomingNotification(
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


def _link_notification(event: object) -> IncomingNotification:
    """What a verification or reset request stores: a sentence in the app, the link by mail."""
    if isinstance(event, PasswordResetRequested):
        kind, url, content = emails.RESET_LINK, event.reset_url, domain.RESET_CONTENT
    else:
        assert isinstance(event, EmailVerificationRequested)
        kind, url, content = emails.VERIFY_LINK, event.verification_url, domain.VERIFY_CONTENT
    return IncomingNotification(
        user_id=event.user_id,
        kind=domain.LINK_TYPE,
        content=content,
        email=str(event.email),
        subject=emails.LINK_EMAILS[kind][0],
        wants_email=True,
        link=url,
        link_kind=kind,
    )
