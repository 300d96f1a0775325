"""The handler of `order.placed` and `order.status-changed` (group `user_service`).

Events come in batches (one partition's fetch; a user's events share a key, hence a partition,
and keep their order). Per user of the batch: one read, then one write applying every new
(order, status) to the user's document (purchase history, order status, latest order's
products) and queueing, for each, `user.purchase-history-updated` (the gateway drops its cached
user details) and a `notification.requested` carrying the user's email and whether to email
(the `order_updates` preference). Then the batch's events are published together (outbox).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from shared.bus import Received
from shared.events.envelope import Envelope
from shared.events.models import (
    NotificationRequested,
    OrderPlaced,
    OrderStatusChanged,
    UserPurchaseHistoryUpdated,
)
from shared.logging import get_logger
from shared.outbox import OutboxRelay, outbox_entry
from shared.runtime import ServiceRuntime
from shared.tracing import event_scope
from user_service.purchases import (
    VERSION_FIELD,
    OrderFact,
    UserOrderWrite,
    after_update,
    notification_content,
    notification_subject,
    plan_order_update,
    wants_order_emails,
)
from user_service.repository import UserRepository
from user_service.settings import UserSettings

log = get_logger(__name__)

NOTIFICATION_TYPE = "order_update"

Arrived = tuple[Envelope, OrderFact]


class OrderUpdateContended(RuntimeError):
    """Other order changes of the user kept landing between read and write; the bus retries."""


def order_fact(event: OrderPlaced | OrderStatusChanged) -> OrderFact:
    """What an order event says about the order."""
    if isinstance(event, OrderPlaced):
        return OrderFact(
            order_id=event.order_id,
            products=list(event.products),
            created_at=event.placed_at,
            status="Placed",
        )
    return OrderFact(
        order_id=event.order_id,
        products=list(event.products),
        created_at=event.created_at,
        status=event.status,
    )


@dataclass
class OrderEventHandlers:
    """Applies order events to users, exactly once per (order, status)."""

    settings: UserSettings
    runtime: ServiceRuntime
    repository: UserRepository

    @property
    def _relay(self) -> OutboxRelay:
        assert self.runtime.relay is not None, "the outbox relay is set up in the lifespan"
        return self.runtime.relay

    async def on_order_events(self, received: Sequence[Received]) -> None:
        """Record new orders and statuses in their users' documents, in arrival order."""
        by_user: dict[str, list[Arrived]] = {}
        for envelope, event in received:
            by_user.setdefault(event.user_id, []).append((envelope, order_fact(event)))
        pending: dict[str, list[dict[str, Any]]] = {}
        for user_id, arrived in by_user.items():
            entries = await self._apply(user_id, arrived)
            if entries:
                pending[user_id] = entries
        if pending:
            await self._relay.flush_entries(self.repository.users, pending)

    async def _apply(self, user_id: str, arrived: list[Arrived]) -> list[dict[str, Any]]:
        """Apply one user's facts in one write; the outbox entries it queued."""
        for _ in range(self.settings.order_event_write_attempts):
            user = await self.repository.for_order_events(user_id)
            if user is None:
                # Nothing to enrich or record; retrying or dead-lettering would not help.
                for envelope, fact in arrived:
                    log.warning(
                        "order event for an unknown user skipped",
                        event_id=str(envelope.id),
                        user_id=user_id,
                        order_id=fact.order_id,
                    )
                return []
            write, outbox = self._plan(user, arrived)
            if not write.applied_keys:
                return []
            applied = await self.repository.apply_order_updates(
                user_id, version=user.get(VERSION_FIELD), write=write, outbox=outbox
            )
            if applied:
                log.info("order events applied", user_id=user_id, count=len(write.applied_keys))
                return outbox
        raise OrderUpdateContended(
            f"{len(arrived)} order event(s) of user {user_id} lost every write race"
        )

    def _plan(
        self, user: Mapping[str, Any], arrived: list[Arrived]
    ) -> tuple[UserOrderWrite, list[dict[str, Any]]]:
        """The write applying the facts not applied yet (each planned on the user as the ones
        before it leave it: a batch may hold a status twice), and the events it queues."""
        write = UserOrderWrite()
        outbox: list[dict[str, Any]] = []
        view: Mapping[str, Any] = user
        for envelope, fact in arrived:
            plan = plan_order_update(view, fact)
            if plan is None:
                log.info(
                    "order event already applied",
                    event_id=str(envelope.id),
                    order_id=fact.order_id,
                    status=fact.status,
                )
                continue
            view = after_update(view, plan)
            write.add(plan)
            with event_scope(envelope):
                # The requests carry the correlation id (and trace) of the order event that
                # caused them.
                outbox += self._outbox(user, fact)
        return write, outbox

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
