"""The scheduler's Kafka side: the handlers of what it consumes (parse, call the use cases in
`service.py`) and the builders of what it publishes.

In (group `scheduler_service`): `user.registered` and `user.preferences-updated` (a copy of each
user's preferences: promotion emails go out only with `promotions` on; unknown = no email),
`order.placed` (what each user bought: never promoted).
Out, through the outbox of the subscription: `notification.requested` (type `promotion`, with
a one-click unsubscribe link) and `promotion.published`.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from scheduler_service import domain
from shared.bus import Handler
from shared.catalog.models import Product
from shared.events.envelope import Envelope
from shared.events.models import (
    NotificationRequested,
    OrderPlaced,
    PromotionPublished,
    UserPreferencesUpdated,
    UserRegistered,
)
from shared.services import SCHEDULER

if TYPE_CHECKING:  # the service builds its events here: a runtime import would be a cycle
    from scheduler_service.service import Promotions

CONSUMER_GROUP = SCHEDULER.name


def handlers(promotions: Promotions) -> dict[str, Handler]:
    """The consumer's topic -> handler map."""

    async def on_preferences(
        envelope: Envelope, event: UserRegistered | UserPreferencesUpdated
    ) -> None:
        # The envelope's time orders the two kinds: an older event never overwrites a newer.
        await promotions.copy_preferences(
            event.user_id, list(event.preferences), envelope.occurred_at
        )

    async def on_order_placed(envelope: Envelope, event: OrderPlaced) -> None:
        del envelope
        await promotions.copy_purchases(event.user_id, [line.productId for line in event.products])

    return {
        UserRegistered.topic: on_preferences,
        UserPreferencesUpdated.topic: on_preferences,
        OrderPlaced.topic: on_order_placed,
    }


def promotion_notification(
    user_id: str, email: str, product: Product, *, send_email: bool, unsubscribe_url: str
) -> NotificationRequested:
    """The user's promotion (in-app, and emailed with a one-click unsubscribe link)."""
    return NotificationRequested(
        user_id=user_id,
        type="promotion",
        content=domain.promotion_content(product),
        email=email,
        send_email=send_email,
        subject=f"{domain.SUBJECT}: {product.title}",
        unsubscribe_url=unsubscribe_url,
    )


def promotion_published(user_id: str, product: Product, slot: datetime) -> PromotionPublished:
    """The fact that a user was sent this period's promotion (for observers)."""
    return PromotionPublished.model_validate(
        {"user_id": user_id, "product": product.as_line(), "slot": slot}
    )
