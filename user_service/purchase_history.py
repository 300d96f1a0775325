"""The user service's answer to `purchase-history.requested` (the recommendation flow).

It publishes `purchase-history.provided` with the same request id: the user's email,
preferences and every order of the purchase history. Answering is read-only, so a redelivered
request is simply answered again (the recommendation service scores each request once).
An unknown user gets no answer (logged).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from shared.events.envelope import Envelope
from shared.events.models import PastPurchase, PurchaseHistoryProvided, PurchaseHistoryRequested
from shared.logging import get_logger
from shared.publisher import EventPublisher
from shared.times import as_utc
from user_service.repository import UserRepository

log = get_logger(__name__)


def purchases_of(user: Mapping[str, Any]) -> list[PastPurchase]:
    """The stored purchase history as event payload."""
    return [
        PastPurchase.model_validate(
            {
                "order_id": entry["order_id"],
                "products": entry.get("products", []),
                "purchase_date": as_utc(entry["purchase_date"]),
            }
        )
        for entry in user.get("purchase_history", [])
    ]


def history_answer(request_id: str, user: Mapping[str, Any]) -> PurchaseHistoryProvided:
    """The answer to one request."""
    return PurchaseHistoryProvided(
        request_id=request_id,
        user_id=str(user["_id"]),
        email=user.get("email"),
        preferences=list(user.get("preferences", [])),
        purchases=purchases_of(user),
    )


@dataclass
class PurchaseHistoryHandler:
    """Handler of `purchase-history.requested` (group `user_service`)."""

    repository: UserRepository
    publisher: EventPublisher

    async def on_requested(self, envelope: Envelope, event: PurchaseHistoryRequested) -> None:
        del envelope
        user = await self.repository.by_id(event.user_id)
        if user is None:
            log.warning("purchase history requested for an unknown user", user_id=event.user_id)
            return
        await self.publisher.publish(history_answer(event.request_id, user))
        log.info("purchase history provided", request_id=event.request_id)
