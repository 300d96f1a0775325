"""The events the user service publishes, and the handlers of the topics it consumes.

Published through the outbox of the user's document: `user.registered`,
`user.preferences-updated`, `user.email-verification-requested`,
`user.password-reset-requested`, `user.sessions-revoked`, and (from the order handlers)
`user.purchase-history-updated` and `notification.requested`. Consumed (group
`user_service`): `order.placed` and `order.status-changed` (see `order_events`, in
batches), `purchase-history.requested`; every handler is registered in `consumer_handlers`,
and `main` starts a consumer as soon as it is non-empty.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from shared.bus import Handler, batched
from shared.events.models import (
    OrderPlaced,
    OrderStatusChanged,
    Preference,
    PurchaseHistoryRequested,
    UserPreferencesUpdated,
    UserRegistered,
)
from shared.runtime import ServiceRuntime
from shared.services import USER
from user_service.order_events import OrderEventHandlers
from user_service.purchase_history import PurchaseHistoryHandler
from user_service.repository import UserRepository
from user_service.settings import UserSettings

CONSUMER_GROUP = USER.name


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


def consumer_handlers(
    settings: UserSettings, runtime: ServiceRuntime, repository: UserRepository
) -> dict[str, Handler]:
    """The topics this service consumes (group `user_service`) and their handlers: one line
    per topic."""
    orders = batched(
        OrderEventHandlers(settings, runtime, repository).on_order_events,
        max_records=settings.order_event_batch_max_records,
    )
    return {
        OrderPlaced.topic: orders,
        OrderStatusChanged.topic: orders,
        PurchaseHistoryRequested.topic: PurchaseHistoryHandler(
            settings, repository, runtime.publisher
        ).on_requested,
    }
