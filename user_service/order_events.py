"""The handlers of `order.placed` and `order.status-changed` (group `user_service`).

Each applies the order event to the user's document (purchase history, order status, latest
order's products) and, in the same single-document write, queues `user.purchase-history-updated`
(the gateway drops its cached user details) and a `notification.requested` carrying the user's
email and whether to email (the `order_updates` preference). Then the outbox is flushed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from shared.events.envelope import Envelope
from shared.events.models import (
    NotificationRequested,
    OrderPlaced,
    OrderStatusChanged,
    UserPurchaseHistoryUpdated,
)
from shared.logging import get_logger
from shared.outbox import outbox_entry
from shared.runtime import ServiceRuntime
from user_service.purchases import (
    VERSION_FIELD,
    OrderFact,
    notification_content,
    notification_subject,
    plan_order_update,
    wants_order_emails,
)
from user_service.repository import UserRepository
from user_service.settings import UserSettings

log = get_logger(__name__)

NOTIFICATION_TYPE = "order_update"


class OrderUpdateContended(RuntimeError):
    """Other order changes of the user kept landing between read and write; the bus retries."""


@dataclass
class OrderEventHandlers:
    """Applies order events to users, exactly once per (order, status)."""

    settings: UserSettings
    runtime: ServiceRuntime
    repository: UserRepository

    async def on_order_placed(self, envelope: Envelope, event: OrderPlaced) -> None:
        """Record a new order in the user's history (and make it the latest)."""
        fact = OrderFact(
            order_id=event.order_id,
            products=list(event.products),
            created_at=event.placed_at,
            status="Placed",
        )
        await self._apply(envelope, event.user_id, fact)

    async def on_order_status_changed(self, envelope: Envelope, event: OrderStatusChanged) -> None:
        """Record an order's new status (the order itself too, if its placement is not in)."""
        fact = OrderFact(
            order_id=event.order_id,
            products=list(event.products),
            created_at=event.created_at,
            status=event.status,
        )
        await self._apply(envelope, event.user_id, fact)

    async def _apply(self, envelope: Envelope, user_id: str, fact: OrderFact) -> None:
        for _ in range(self.settings.order_event_write_attempts):
            user = await self.repository.by_id(user_id)
            if user is None:
                # Nothing to enrich or record; retrying or dead-lettering would not help.
                log.warning(
                    "order event for an unknown user skipped",
                    event_id=str(envelope.id),
                    user_id=user_id,
                    order_id=fact.order_id,
                )
                return
            plan = plan_order_update(user, fact)
            if plan is None:
                log.info(
                    "order event already applied",
                    event_id=str(envelope.id),
                    order_id=fact.order_id,
                    status=fact.status,
                )
                return
            applied = await self.repository.apply_order_update(
                user_id,
                version=user.get(VERSION_FIELD),
                plan=plan,
                outbox=self._outbox(user, fact),
            )
            if applied:
                assert self.runtime.relay is not None, "the outbox relay is set up in the lifespan"
                await self.runtime.relay.flush_document(self.repository.users, user_id)
                log.info(
                    "order event applied",
                    event_id=str(envelope.id),
                    order_id=fact.order_id,
                    status=fact.status,
                )
                return
        raise OrderUpdateContended(
            f"order {fact.order_id} ({fact.status}) lost every write race for its user"
        )

    def _outbox(self, user: Mapping[str, Any], fact: OrderFact) -> list[dict[str, Any]]:
        """The cache-invalidation event and the notification request of one applied fact."""
        history_updated = UserPurchaseHistoryUpdated(
            user_id=user["_id"], order_id=fact.order_id, order_status=fact.status
        )
        request = NotificationRequested(
            user_id=user["_id"],
            type=NOTIFICATION_TYPE,
            content=notification_content(fact.order_id, fact.status),
            email=user["email"],
            send_email=wants_order_emails(user),
            subject=notification_subject(fact.order_id, fact.status),
        )
        publisher = self.runtime.publisher
        return [outbox_entry(publisher, history_updated), outbox_entry(publisher, request)]
