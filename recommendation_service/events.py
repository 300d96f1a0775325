"""The recommendation service's Kafka side: the handlers of what it consumes (parse, call the
use cases in `service.py`) and the builders of what it publishes.

In (group `recommendation_service`): `order.placed` (co-purchase counts, once per order id),
`purchase-history.provided` (the user service's answer: keep it, score it).
Out, through the outbox of the request document: `purchase-history.requested`, then
`recommendation.generated` and `notification.requested` (type `recommendation`, emailed only
if the user has the `recommendations` preference).
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from recommendation_service import domain
from shared.bus import Handler
from shared.catalog.models import Product
from shared.events.envelope import Envelope
from shared.events.models import (
    NotificationRequested,
    OrderPlaced,
    PurchaseHistoryProvided,
    RecommendationGenerated,
)
from shared.services import RECOMMENDATION

if TYPE_CHECKING:  # the service builds its events here: a runtime import would be a cycle
    from recommendation_service.service import Recommendations

CONSUMER_GROUP = RECOMMENDATION.name


def handlers(recommendations: Recommendations) -> dict[str, Handler]:
    """The consumer's topic -> handler map."""

    async def on_order_placed(envelope: Envelope, event: OrderPlaced) -> None:
        del envelope
        await recommendations.count_co_purchases(
            event.order_id, [line.productId for line in event.products]
        )

    async def on_history_provided(envelope: Envelope, event: PurchaseHistoryProvided) -> None:
        del envelope
        await recommendations.take_history(event)

    return {
        OrderPlaced.topic: on_order_placed,
        PurchaseHistoryProvided.topic: on_history_provided,
    }


def recommendation_generated(
    request_id: str, user_id: str, lines: list[dict[str, Any]], generated_at: datetime
) -> RecommendationGenerated:
    """The fact that a user's list was computed (observers such as the gateway's cache)."""
    return RecommendationGenerated.model_validate(
        {
            "request_id": request_id,
            "user_id": user_id,
            "products": lines,
            "generated_at": generated_at,
        }
    )


def recommendation_notification(
    history: PurchaseHistoryProvided, products: list[Product]
) -> NotificationRequested:
    """The user's notification of the list (emailed only when they asked for it)."""
    return NotificationRequested(
        user_id=history.user_id,
        type="recommendation",
        content=domain.notification_content(products),
        email=history.email,
        send_email=domain.wants_email(history),
        subject=domain.SUBJECT,
    )
