"""The user service's answer to `purchase-history.requested` (the recommendation flow).

It publishes `purchase-history.provided` with the same request id: the user's email,
preferences and a bounded window of the purchase history: the newest `max_orders` orders the
request names (PURCHASE_HISTORY_WINDOW_DEFAULT if none, at most PURCHASE_HISTORY_WINDOW_MAX),
cut further, oldest first, until the message fits KAFKA_MAX_MESSAGE_BYTES. Answering is
read-only, so a redelivered request is simply answered again (the recommendation service scores
each request once). An unknown user gets no answer (logged).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from shared.events.envelope import Envelope
from shared.events.models import PastPurchase, PurchaseHistoryProvided, PurchaseHistoryRequested
from shared.logging import get_logger
from shared.publisher import EventPublisher
from shared.times import as_utc
from user_service.repository import UserRepository
from user_service.settings import UserSettings

log = get_logger(__name__)


def purchases_of(purchases: Sequence[Mapping[str, Any]]) -> list[PastPurchase]:
    """Stored purchases as event payload, in the order given."""
    return [
        PastPurchase.model_validate(
            {
                "order_id": purchase["_id"],
                "products": purchase.get("products", []),
                "purchase_date": as_utc(purchase["purchase_date"]),
            }
        )
        for purchase in purchases
    ]


def history_answer(
    request_id: str, user: Mapping[str, Any], purchases: Sequence[Mapping[str, Any]]
) -> PurchaseHistoryProvided:
    """The answer to one request, with these purchases (newest first)."""
    return PurchaseHistoryProvided(
        request_id=request_id,
        user_id=str(user["_id"]),
        email=user.get("email"),
        preferences=list(user.get("preferences", [])),
        purchases=purchases_of(purchases),
    )


def window_of(event: PurchaseHistoryRequested, settings: UserSettings) -> int:
    """How many of the newest orders answer this request."""
    asked = event.max_orders or settings.purchase_history_window_default
    return min(asked, settings.purchase_history_window_max)


def fitted(answer: PurchaseHistoryProvided, publisher: EventPublisher) -> PurchaseHistoryProvided:
    """The answer without its oldest purchases, as few as needed for it to fit the size limit
    (halving the cut, so a long history costs a few encodings, not one per order)."""
    if publisher.fits(answer):
        return answer
    low, high = 0, len(answer.purchases)  # keeping `low` fits, keeping `high` does not
    while high - low > 1:
        middle = (low + high) // 2
        if publisher.fits(answer.model_copy(update={"purchases": answer.purchases[:middle]})):
            low = middle
        else:
            high = middle
    return answer.model_copy(update={"purchases": answer.purchases[:low]})


@dataclass
class PurchaseHistoryHandler:
    """Handler of `purchase-history.requested` (group `user_service`)."""

    settings: UserSettings
    repository: UserRepository
    publisher: EventPublisher

    async def on_requested(self, envelope: Envelope, event: PurchaseHistoryRequested) -> None:
        del envelope
        user = await self.repository.by_id(event.user_id)
        if user is None:
            log.warning("purchase history requested for an unknown user", user_id=event.user_id)
            return
        purchases = await self.repository.purchases.newest(
            event.user_id, window_of(event, self.settings)
        )
        answer = fitted(history_answer(event.request_id, user, purchases), self.publisher)
        if len(answer.purchases) < len(purchases):
            log.warning(
                "purchase history cut to fit the message size limit",
                request_id=event.request_id,
                orders=len(purchases),
                kept=len(answer.purchases),
            )
        await self.publisher.publish(answer)
        log.info("purchase history provided", request_id=event.request_id)
