"""The background mail sender: claims due pending mail, sends it, records the outcome.

Consumers never wait on SMTP: the service (`service.py`) stores the notification with
delivery `pending` and wakes this sender, a worker of the runtime (started after the consumers,
stopped before them and the database). It looks up a batch of due mail in one query and sends
it SMTP_MAX_CONNECTIONS at a time over the mailer's kept-open connections; each claim is one
conditional write that leases the mail (its due time moves past the lease), so two replicas
never send the same mail at once. A failure schedules the next attempt with exponential backoff;
after MAIL_MAX_ATTEMPTS the mail is `failed`.

Only a crash between the SMTP server's acceptance and the `sent` write can send twice (the
lease expires and the mail is retried); the Message-ID is the notification id, so mail clients
and servers can recognise the copy.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from notification_service import domain, emails, tracking
from notification_service.emails import OutgoingMail
from notification_service.mailer import Mailer, MailError
from notification_service.repository import NotificationRepository
from notification_service.settings import NotificationSettings
from shared import tracing
from shared.links import LinkSigner
from shared.logging import get_logger
from shared.metrics import MAIL_DELIVERIES

log = get_logger(__name__)

# Due mail is looked up for this many mails per connection at once (one query per batch).
CANDIDATES_PER_CONNECTION = 100


@dataclass
class MailSender:
    """Sends pending mail in the background until stopped (a runtime worker)."""

    settings: NotificationSettings
    repository: NotificationRepository
    mailer: Mailer
    links: LinkSigner

    def __post_init__(self) -> None:
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start the sending loop (nothing to do when email is off)."""
        if self.mailer.enabled:
            self._task = asyncio.create_task(self._run(), name="mail-sender")

    def wake(self) -> None:
        """New pending mail: look now rather than at the next poll."""
        self._wake.set()

    async def stop(self) -> None:
        """Finish the mails in hand, then stop; unsent mail stays pending for the next start."""
        self._stopping.set()
        self._wake.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(
                    asyncio.shield(self._task), timeout=self.settings.mail_shutdown_grace_seconds
                )
            except TimeoutError:
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
            self._task = None
        self.mailer.close()

    def running(self) -> bool:
        """Whether the loop is alive (readiness)."""
        return self._task is not None and not self._task.done()

    async def _run(self) -> None:
        while not self._stopping.is_set():
            self._wake.clear()  # before the pass: a wake during it asks for another
            try:
                with tracing.untraced():  # polling is not a trace; each send continues one
                    await self.send_due()
            except Exception:
                log.exception("mail sender pass failed")
            self.mailer.close_idle()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self._wake.wait(), timeout=self.settings.mail_poll_interval_seconds
                )

    async def send_due(self) -> int:
        """Send the due mail until none is left (or the sender stops), as many at a time as
        the mailer keeps connections; how many were claimed."""
        handled = 0
        workers = self.mailer.max_connections
        while not self._stopping.is_set():
            candidates = await self.repository.due_mail_ids(
                datetime.now(UTC), workers * CANDIDATES_PER_CONNECTION
            )
            if not candidates:
                break
            handled_before = handled
            pending = iter(candidates)  # shared: each candidate goes to one worker

            async def work(pending: Iterator[str]) -> None:
                nonlocal handled
                for notification_id in pending:
                    if self._stopping.is_set():
                        return
                    try:
                        claimed = await self._claim_and_send(notification_id)
                        handled += claimed  # after the await: workers interleave
                    except Exception:
                        # The others carry on: cancelling their exchanges could send twice.
                        log.exception("mail sender failed", notification_id=notification_id)

            await asyncio.gather(*(work(pending) for _ in range(min(workers, len(candidates)))))
            if handled == handled_before:
                break  # others took them, or the store fails: the next wake or poll looks again
        return handled

    async def send_one(self) -> bool:
        """Claim and send one due mail; False when none is due."""
        while candidates := await self.repository.due_mail_ids(
            datetime.now(UTC), self.mailer.max_connections
        ):
            for notification_id in candidates:
                if await self._claim_and_send(notification_id):
                    return True
        return False

    async def _claim_and_send(self, notification_id: str) -> bool:
        """Claim that mail and send it; False when another sender took it first."""
        now = datetime.now(UTC)
        lease = uuid.uuid4().hex
        claimed = await self.repository.claim_mail(
            notification_id, now, now + timedelta(seconds=self.settings.mail_lease_seconds), lease
        )
        if claimed is None:
            return False
        attempts = int(claimed["delivery"].get("attempts", 0)) + 1
        try:
            # The trace of the event that asked for this mail goes on here (when tracing is on).
            with tracing.continued(
                "smtp send",
                claimed.get(tracing.TRACE_FIELD),
                {
                    "fleet.notification_id": notification_id,
                    "fleet.notification_type": str(claimed["type"]),
                    "fleet.mail_attempt": attempts,
                    "server.address": self.mailer.endpoint.host if self.mailer.endpoint else "",
                },
            ):
                await self.mailer.send(self.compose(claimed))
        except (MailError, ValueError) as exc:
            await self._record_failure(notification_id, lease, attempts, str(exc))
            return True
        MAIL_DELIVERIES.labels(self.settings.service_name, "sent").inc()
        if await self.repository.mark_sent(notification_id, lease, datetime.now(UTC)):
            log.info("email sent", notification_id=notification_id, attempts=attempts, routine=True)
        else:
            log.warning("email sent after its lease expired", notification_id=notification_id)
        return True

    async def _record_failure(
        self, notification_id: str, lease: str, attempts: int, error: str
    ) -> None:
        if attempts >= self.settings.mail_max_attempts:
            MAIL_DELIVERIES.labels(self.settings.service_name, "failed").inc()
            log.warning(
                "email failed; giving up", notification_id=notification_id, attempts=attempts
            )
            await self.repository.mark_failed(notification_id, lease, error)
            return
        MAIL_DELIVERIES.labels(self.settings.service_name, "retrying").inc()
        delay = domain.retry_delay(
            attempts,
            base_seconds=self.settings.mail_retry_base_seconds,
            max_seconds=self.settings.mail_retry_max_seconds,
        )
        log.warning(
            "email failed; will retry",
            notification_id=notification_id,
            attempts=attempts,
            retry_in_seconds=delay,
            error=error,
        )
        await self.repository.mark_retry(
            notification_id, lease, error, datetime.now(UTC) + timedelta(seconds=delay)
        )

    def compose(self, notification: dict[str, Any]) -> OutgoingMail:
        """The email of a stored notification, with its read-tracking pixel."""
        notification_id = notification["_id"]
        token = tracking.sign(
            self.links,
            notification_id,
            notification["user_id"],
            self.settings.tracking_link_ttl_seconds,
        )
        pixel = emails.pixel_url(self.settings.public_base_url, token)
        welcome_name = notification.get("welcome_name")
        link = notification.get("link")
        if welcome_name is not None:
            content = emails.welcome_email(welcome_name, pixel, link)
        elif link is not None and notification.get("link_kind") in emails.LINK_EMAILS:
            content = emails.link_email(notification["link_kind"], link, pixel)
        else:
            content = emails.notification_email(
                notification["type"], notification["content"], notification.get("subject"), pixel
            )
        return emails.build_message(
            content,
            sender=self.mailer.sender,
            sender_name=self.mailer.sender_name,
            recipient=notification["email"],
            unsubscribe_url=notification.get("unsubscribe_url"),
            message_id=notification_id,
        )
