"""Payload models of every integration event: the only place a payload's shape is written.

Events are facts in the past tense; `EVENT_TYPES` maps each envelope `type` to its model.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Annotated, ClassVar, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, WithJsonSchema
from pydantic.networks import validate_email

Preference = Literal["promotions", "order_updates", "recommendations"]
NotificationType = Literal["promotion", "order_update", "recommendation", "alert", "other"]
OrderStatus = Literal["Placed", "Shipped", "Delivered", "Cancelled"]


@functools.lru_cache(maxsize=4096)
def _checked_email(value: str) -> str:
    """pydantic's EmailStr check and normalisation, remembered per address: every event of a
    user carries the same address, and the check (email-validator) cost 30 us each time, built
    by the producer and again parsed by every consumer (9% of the user service's CPU under
    placeOrder). An address that fails is not remembered: it fails again each time."""
    return validate_email(value)[1]


# EmailStr, checked once per distinct address (same rule, same JSON schema).
Email = Annotated[
    str, AfterValidator(_checked_email), WithJsonSchema({"type": "string", "format": "email"})
]


class Event(BaseModel):
    """Base of every payload; `event_type` is the envelope `type` and `topic` where it goes."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    event_type: ClassVar[str]
    topic: ClassVar[str]
    key_field: ClassVar[str] = "user_id"

    @property
    def key(self) -> str:
        """The Kafka key: the user id, so one user's events stay in order."""
        return str(getattr(self, self.key_field))


class UserRegistered(Event):
    event_type = "UserRegistered"
    topic = "user.registered"

    user_id: str
    name: str
    email: Email
    preferences: list[Preference]
    # `{PUBLIC_BASE_URL}/verify-email/{token}`, carried by the welcome email (absent in events
    # published before email verification existed).
    verification_url: str | None = None


class EmailVerificationRequested(Event):
    """A user asked for a new email verification link (`resendVerification`)."""

    event_type = "EmailVerificationRequested"
    topic = "user.email-verification-requested"

    user_id: str
    name: str
    email: Email
    verification_url: str


class PasswordResetRequested(Event):
    """Someone asked to reset the password of a known address (`requestPasswordReset`)."""

    event_type = "PasswordResetRequested"
    topic = "user.password-reset-requested"

    user_id: str
    name: str
    email: Email
    reset_url: str


class SessionsRevoked(Event):
    """Sessions of a user ended (logout, password change or reset, a reused refresh token, an
    operator changing roles): their access tokens are refused until `expires_at`, when the
    last of them expires anyway."""

    event_type = "SessionsRevoked"
    topic = "user.sessions-revoked"

    user_id: str
    session_ids: list[str]
    expires_at: datetime


class UserPreferencesUpdated(Event):
    event_type = "UserPreferencesUpdated"
    topic = "user.preferences-updated"

    user_id: str
    preferences: list[Preference]


class ProductLine(BaseModel):
    """A product as carried by order events."""

    model_config = ConfigDict(frozen=True)

    productId: str  # the public contract's spelling
    title: str
    category: str
    # The unit price (the catalog's, for orders placed since issue 15).
    price: float | None = None
    # How many of it (orders before issue 15 and recommendation lines: 1).
    quantity: int = Field(default=1, ge=1)


CENT = Decimal("0.01")


def total_of(lines: Sequence[ProductLine]) -> float:
    """Unit prices times quantities, summed in exact cents (no float drift), as a number."""
    cents = sum((Decimal(str(line.price or 0)) * line.quantity for line in lines), start=Decimal(0))
    return float(cents.quantize(CENT, rounding=ROUND_HALF_UP))


class OrderPlaced(Event):
    event_type = "OrderPlaced"
    topic = "order.placed"

    order_id: str
    user_id: str
    products: list[ProductLine]
    placed_at: datetime


class OrderStatusChanged(Event):
    event_type = "OrderStatusChanged"
    topic = "order.status-changed"

    order_id: str
    user_id: str
    previous_status: OrderStatus
    status: OrderStatus
    products: list[ProductLine]
    created_at: datetime
    changed_at: datetime


class UserPurchaseHistoryUpdated(Event):
    """The user service changed a user's order status or purchase history (cached details of
    that user are stale)."""

    event_type = "UserPurchaseHistoryUpdated"
    topic = "user.purchase-history-updated"

    user_id: str
    order_id: str
    order_status: OrderStatus


class NotificationRequested(Event):
    """Ask the notification service to store (and maybe email) a notification."""

    event_type = "NotificationRequested"
    topic = "notification.requested"

    user_id: str
    type: NotificationType
    content: str = Field(min_length=1)
    email: Email | None = None
    send_email: bool = False
    subject: str | None = None
    # Promotion emails: where one click unsubscribes (sent as the List-Unsubscribe header).
    unsubscribe_url: str | None = None


class NotificationCreated(Event):
    """A notification was stored: the gateway drops the user's cached notifications and pushes
    it to the user's `notificationAdded` subscriptions."""

    event_type = "NotificationCreated"
    topic = "notification.created"

    notification_id: str
    user_id: str
    type: NotificationType
    content: str
    sent_at: datetime


class NotificationRead(Event):
    """A notification was marked read (API or tracking pixel); caches of it are stale."""

    event_type = "NotificationRead"
    topic = "notification.read"

    notification_id: str
    user_id: str


class PurchaseHistoryRequested(Event):
    """The recommendation service asks the user service for a user's purchase history."""

    event_type = "PurchaseHistoryRequested"
    topic = "purchase-history.requested"

    request_id: str
    user_id: str
    # How many of the newest orders to send (None: the user service's default window).
    max_orders: int | None = Field(default=None, ge=1)


class PastPurchase(BaseModel):
    """One order of a purchase history."""

    model_config = ConfigDict(frozen=True)

    order_id: str
    products: list[ProductLine]
    purchase_date: datetime


class PurchaseHistoryProvided(Event):
    """The user service's answer to a PurchaseHistoryRequested (same request id): the newest
    orders of the window asked for, newest first, as many as fit the message size limit."""

    event_type = "PurchaseHistoryProvided"
    topic = "purchase-history.provided"

    request_id: str
    user_id: str
    email: Email | None = None
    preferences: list[Preference] = Field(default_factory=list)
    purchases: list[PastPurchase] = Field(default_factory=list)


class RecommendationGenerated(Event):
    """A user's latest recommended products were computed and stored."""

    event_type = "RecommendationGenerated"
    topic = "recommendation.generated"

    request_id: str
    user_id: str
    products: list[ProductLine]
    generated_at: datetime


class PromotionPublished(Event):
    """The scheduler promoted a product to a subscribed user for one schedule slot."""

    event_type = "PromotionPublished"
    topic = "promotion.published"

    user_id: str
    product: ProductLine
    slot: datetime


EVENT_TYPES: dict[str, type[Event]] = {
    cls.event_type: cls
    for cls in (
        UserRegistered,
        EmailVerificationRequested,
        PasswordResetRequested,
        SessionsRevoked,
        UserPreferencesUpdated,
        OrderPlaced,
        OrderStatusChanged,
        UserPurchaseHistoryUpdated,
        NotificationRequested,
        NotificationCreated,
        NotificationRead,
        PurchaseHistoryRequested,
        PurchaseHistoryProvided,
        RecommendationGenerated,
        PromotionPublished,
    )
}
