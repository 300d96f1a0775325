"""The user service's Kafka adapter: the handlers of the topics it consumes (decode, call
`service.py`) and the builders of the events it publishes.

Published through the outbox of the user's document: `user.registered`,
`user.preferences-updated`, `user.email-verification-requested`,
`user.password-reset-requested`, `user.sessions-revoked`; through the outbox of the order's
purchase: `user.purchase-history-updated` and `notification.requested`; straight away (a
read-only answer): `purchase-history.provided`. Consumed (group `user_service`):
`order.placed` and `order.status-changed` (in batches), `purchase-history.requested`; every
handler is registered in `consumer_handlers`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from shared.bus import Handler, Received, batched
from shared.events.envelope import Envelope
from shared.events.models import (
    NotificationRequested,
    OrderPlaced,
    OrderStatusChanged,
    PastPurchase,
    Preference,
    PurchaseHistoryProvided,
    PurchaseHistoryRequested,
    UserPreferencesUpdated,
    UserPurchaseHistoryUpdated,
    UserRegistered,
)
from shared.services import USER
from shared.times import as_utc
from user_service import domain

if TYPE_CHECKING:  # the service builds its events here: a runtime import would be a cycle
    from user_service.service import Users

CONSUMER_GROUP = USER.name

NOTIFICATION_TYPE = "order_update"


def consumer_handlers(users: Users) -> dict[str, Handler]:
    """The topics this service consumes (group `user_service`) and their handlers: one line
    per topic."""

    async def on_order_events(received: Sequence[Received]) -> None:
        await users.apply_order_events(
            [(envelope, event.user_id, order_fact(event)) for envelope, event in received]
        )

    async def on_purchase_history_requested(
        envelope: Envelope, event: PurchaseHistoryRequested
    ) -> None:
        del envelope
        await users.provide_purchase_history(event)

    orders = batched(on_order_events, max_records=users.settings.order_event_batch_max_records)
    return {
        OrderPlaced.topic: orders,
        OrderStatusChanged.topic: orders,
        PurchaseHistoryRequested.topic: on_purchase_history_requested,
    }


def order_fact(event: OrderPlaced | OrderStatusChanged) -> domain.OrderFact:
    """What an order event says about the order."""
    if isinstance(event, OrderPlaced):
        return domain.OrderFact(
            order_id=event.order_id,
            products=list(event.products),
            created_at=event.placed_at,
            status="Placed",
        )
    return domain.OrderFact(
        order_id=event.order_id,
        products=list(event.products),
        created_at=event.created_at,
        status=event.status,
    )


def user_registered(user: Mapping[str, Any], verification_url: str) -> UserRegistered:
    """The event announcing a stored user (its welcome email carries the verification link)."""
    return UserRegistered(
        user_id=user["_id"],
        name=user["name"],
        email=user["email"],
        preferences=user["preferences"],
        verification_url=verification_url,
    )


def preferences_updated(user_id: str, preferences: list[Preference]) -> UserPreferencesUpdated:
    """The event announcing a user's new preferences."""
    return UserPreferencesUpdated(user_id=user_id, preferences=preferences)


def purchase_history_updated(user_id: str, fact: domain.OrderFact) -> UserPurchaseHistoryUpdated:
    """The event telling the gateway to drop its cached details of a user whose order changed."""
    return UserPurchaseHistoryUpdated(
        user_id=user_id, order_id=fact.order_id, order_status=fact.status
    )


def order_update_requested(
    user: Mapping[str, Any], fact: domain.OrderFact
) -> NotificationRequested:
    """The notification of an order's new status: in-app always, emailed only to users with the
    `order_updates` preference."""
    return NotificationRequested(
        user_id=user["_id"],
        type=NOTIFICATION_TYPE,
        content=domain.notification_content(fact.order_id, fact.status),
        email=user["email"],
        send_email=domain.wants_order_emails(user),
        subject=domain.notification_subject(fact.order_id, fact.status),
    )


def purchase_history_provided(
    request_id: str, user: Mapping[str, Any], purchases: Sequence[Mapping[str, Any]]
) -> PurchaseHistoryProvided:
    """The answer to one purchase-history request, with these stored purchases (newest
    first)."""
    return PurchaseHistoryProvided(
        request_id=request_id,
        user_id=str(user["_id"]),
        email=user.get("email"),
        preferences=list(user.get("preferences", [])),
        purchases=[
            PastPurchase.model_validate(
                {
                    "order_id": purchase["_id"],
                    "products": purchase.get("products", []),
                    "purchase_date": as_utc(purchase["purchase_date"]),
                }
            )
            for purchase in purchases
        ],
    )
