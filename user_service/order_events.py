"""The handler of `order.placed` and `order.status-changed` (group `user_service`).

Events come in batches (one partition's fetch; a user's events share a key, hence a partition,
and keep their order). Per user of the batch: one read of the user's summary and one of the
batch's purchases, one write of the summary (order status, latest order's products), then one
write per order recording its new statuses in its purchase document (created by the first) and
queueing, for each, `user.purchase-history-updated` (the gateway drops its cached user details)
and a `notification.requested` carrying the user's email and whether to email (the
`order_updates` preference). Then the batch's events are published together (outboxes of the
purchases). See `purchases` for why the summary goes first.
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
    BatchPlan,
    OrderFact,
    notification_content,
    notification_subject,
    plan_batch,
    purchase_fields,
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
        """Record new orders and statuses as purchases and in their users' summaries, in
        arrival order."""
        by_user: dict[str, list[Arrived]] = {}
        for envelope, event in received:
            by_user.setdefault(event.user_id, []).append((envelope, order_fact(event)))
        pending: dict[str, list[dict[str, Any]]] = {}
        for user_id, arrived in by_user.items():
            pending.update(await self._apply(user_id, arrived))
        if pending:
            await self._relay.flush_entries(self.repository.purchases.collection, pending)

    async def _apply(self, user_id: str, arrived: list[Arrived]) -> dict[str, list[dict[str, Any]]]:
        """Apply one user's facts; the outbox entries queued, by purchase (order id)."""
        facts = [fact for _, fact in arrived]
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
                return {}
            applied = await self.repository.purchases.applied(
                sorted({fact.order_id for fact in facts})
            )
            plan = plan_batch(user, applied, facts)
            self._log_repeats(arrived, plan)
            if not plan.purchases:
                return {}
            if plan.summary and not await self.repository.set_order_summary(
                user_id, version=user.get(VERSION_FIELD), fields=plan.summary
            ):
                continue
            queued = await self._record(user, arrived, plan)
            log.info("order events applied", user_id=user_id, count=len(plan.new_facts))
            return queued
        raise OrderUpdateContended(
            f"{len(arrived)} order event(s) of user {user_id} lost every write race"
        )

    async def _record(
        self, user: Mapping[str, Any], arrived: list[Arrived], plan: BatchPlan
    ) -> dict[str, list[dict[str, Any]]]:
        """Write each order's new statuses with their events; those whose write another
        delivery made first are left to it (their events are queued there)."""
        queued: dict[str, list[dict[str, Any]]] = {}
        for order_id, write in plan.purchases.items():
            outbox: list[dict[str, Any]] = []
            for position in write.facts:
                envelope, fact = arrived[position]
                with event_scope(envelope):
                    # The requests carry the correlation id (and trace) of the order event
                    # that caused them.
                    outbox += self._outbox(user, fact)
            if await self.repository.purchases.apply(
                order_id,
                fields=purchase_fields(user["_id"], write),
                statuses=write.statuses,
                outbox=outbox,
            ):
                queued[order_id] = outbox
            else:
                log.info("order statuses applied meanwhile", order_id=order_id)
        return queued

    @staticmethod
    def _log_repeats(arrived: list[Arrived], plan: BatchPlan) -> None:
        new = set(plan.new_facts)
        for position, (envelope, fact) in enumerate(arrived):
            if position not in new:
                log.info(
                    "order event already applied",
                    event_id=str(envelope.id),
                    order_id=fact.order_id,
                    status=fact.status,
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
