"""The notification service's use cases: store the notifications consumed events ask for, list a
user's notifications, mark one read (by the API or by an email's tracking pixel).

Each state change and the event announcing it are one write (the outbox); the event is then
published at once from what is in hand, bounded by the outbox flush timeout; the relay retries
what is left. Email is not sent here: a notification that wants one is stored with delivery
`pending` and the background sender (`sender.py`) is woken to deliver it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from notification_service import domain, tracking
from notification_service.domain import DeliveryStatus, IncomingNotification
from notification_service.repository import NotificationRepository
from notification_service.schemas import NotificationOut
from notification_service.settings import NotificationSettings
from shared import tracing
from shared.errors import NotFound
from shared.events.envelope import Envelope
from shared.events.models import NotificationCreated, NotificationRead
from shared.links import LinkSigner
from shared.logging import get_logger
from shared.outbox import OutboxRelay, outbox_entry
from shared.publisher import EventPublisher
from shared.tracing import event_scope

log = get_logger(__name__)

NOTIFICATION_NOT_FOUND = "That notification does not exist."
_STAMP_STEP = timedelta(milliseconds=1)  # stored dates keep milliseconds


@dataclass
class Notifications:
    """What the HTTP routes and the Kafka handlers call."""

    settings: NotificationSettings
    repository: NotificationRepository
    publisher: EventPublisher
    relay: OutboxRelay
    links: LinkSigner
    mail_enabled: bool
    wake_sender: Callable[[], None]
    _last_stamp: datetime = field(default=datetime.min.replace(tzinfo=UTC), init=False)

    async def store(self, batch: Sequence[tuple[Envelope, IncomingNotification]]) -> None:
        """Store a batch of consumed events' notifications (each keyed by its event's id, so a
        redelivered event stores nothing new) and announce them (`notification.created`): one
        insert, one publish (every acknowledgement awaited together), one write clearing their
        outbox entries. A crash or a broker outage between the steps leaves the entries to the
        outbox relay."""
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
        log.info(
            "notifications stored",
            count=len(new),
            already_stored=len(prepared) - len(new),
            routine=True,
        )
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

    async def list_mine(self, user_id: str, *, unread_only: bool) -> list[NotificationOut]:
        """The user's notifications, newest first, at most a page."""
        found = await self.repository.list_for_user(
            user_id, unread_only=unread_only, limit=self.settings.notifications_page_limit
        )
        return [domain.notification_out(n) for n in found]

    async def mark_read(self, notification_id: str, user_id: str) -> NotificationOut:
        """Mark the user's own notification read (again is fine); NotFound if it is missing or
        someone else's."""
        found = await self._mark_read(notification_id, user_id)
        if found is None:
            raise NotFound(NOTIFICATION_NOT_FOUND)
        return domain.notification_out(found)

    async def mark_tracked_read(self, token: str) -> None:
        """Mark read the notification a validly signed pixel token names; any other token
        marks nothing. Never fails: an email client cannot act on an error."""
        read = tracking.verify(self.links, token)
        if read is None:
            return
        try:
            await self._mark_read(read.notification_id, read.user_id)
        except Exception:
            log.exception("marking a tracked read failed", notification_id=read.notification_id)

    async def _mark_read(self, notification_id: str, user_id: str) -> dict[str, Any] | None:
        """Mark read and announce it (`notification.read`) in the same write."""
        event = NotificationRead(notification_id=notification_id, user_id=user_id)
        found, changed = await self.repository.mark_read(
            notification_id, user_id, outbox_entry(self.publisher, event)
        )
        if changed:
            await self.relay.flush_document(self.repository.notifications, notification_id)
        return found

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
        self, envelope: Envelope, incoming: IncomingNotification, now: datetime, sent_at: datetime
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
                wants=incoming.wants_email, mail_enabled=self.mail_enabled, now=now
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
