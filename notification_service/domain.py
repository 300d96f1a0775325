"""The notification rules: what a consumed event asks to store, ids, the stored shape,
delivery states and the public view. Pure."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from notification_service.schemas import NotificationOut
from shared.events.models import NotificationRequested, NotificationType
from shared.times import as_utc

WELCOME_TYPE: NotificationType = "other"
LINK_TYPE: NotificationType = "alert"
VERIFY_CONTENT = "We emailed you a link to confirm your email address."
RESET_CONTENT = "A password reset link was emailed to you. If you did not ask for it, ignore it."
EMAIL_DISABLED = "email is disabled"
EMAIL_NOT_WANTED = "no email was asked for"


@dataclass(frozen=True, slots=True)
class IncomingNotification:
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


class DeliveryStatus(StrEnum):
    """Where a notification's email stands."""

    PENDING = "pending"  # to be sent
    SENT = "sent"
    FAILED = "failed"  # the SMTP server could not be reached or refused it
    SKIPPED = "skipped"  # no email wanted, no address, or email disabled


def notification_id_for(event_id: uuid.UUID) -> str:
    """A notification's id is its event's id: a redelivered event maps to the same one."""
    return str(event_id)


def welcome_content(name: str) -> str:
    """The in-app welcome message."""
    return f"Welcome to Fleet, {name}! Your account is ready."


def wants_email(event: NotificationRequested) -> bool:
    """A requested notification is emailed only when asked for and addressed."""
    return event.send_email and bool(event.email)


def initial_delivery(
    *, wants: bool, mail_enabled: bool, now: datetime | None = None
) -> dict[str, Any]:
    """The delivery record a new notification starts with (pending mail is due at once)."""
    due: datetime | None = None
    if wants and mail_enabled:
        status, reason = DeliveryStatus.PENDING, None
        due = now or datetime.now(UTC)
    else:
        status = DeliveryStatus.SKIPPED
        reason = EMAIL_NOT_WANTED if not wants else EMAIL_DISABLED
    return {
        "status": status.value,
        "attempts": 0,
        "last_error": reason,
        "next_attempt_at": due,
        "lease": None,
        "sent_at": None,
    }


def retry_delay(attempts: int, *, base_seconds: float, max_seconds: float) -> float:
    """Exponential backoff after `attempts` failed attempts: base, 2 base, 4 base... capped."""
    exponent = max(attempts - 1, 0)
    # Capping the exponent keeps 2**n finite for any attempt count.
    return float(min(max_seconds, base_seconds * 2 ** min(exponent, 62)))


def new_notification(
    *,
    notification_id: str,
    user_id: str,
    kind: NotificationType,
    content: str,
    email: str | None,
    subject: str | None,
    delivery: dict[str, Any],
    sent_at: datetime,
    welcome_name: str | None = None,
    unsubscribe_url: str | None = None,
    link: str | None = None,
    link_kind: str | None = None,
) -> dict[str, Any]:
    """The stored notification; `email`, `subject`, `welcome_name`, `unsubscribe_url` and
    `link` (a verification or reset link, of `link_kind`: only ever in the email, never in the
    in-app content) let the background sender compose (and retry) the email."""
    return {
        "_id": notification_id,
        "user_id": user_id,
        "type": kind,
        "content": content,
        "sent_at": sent_at,
        "read": False,
        "email": email,
        "subject": subject,
        "delivery": delivery,
        "welcome_name": welcome_name,
        "unsubscribe_url": unsubscribe_url,
        "link": link,
        "link_kind": link_kind,
    }


def notification_out(notification: Mapping[str, Any]) -> NotificationOut:
    """The public view of a stored notification."""
    return NotificationOut(
        id=notification["_id"],
        userId=notification["user_id"],
        type=notification["type"],
        content=notification["content"],
        sentAt=as_utc(notification["sent_at"]),
        read=bool(notification.get("read", False)),
    )
