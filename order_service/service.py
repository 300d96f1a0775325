"""The order service's use cases: place an order, list one's orders, change an order's status.

Each state change and the event announcing it are one single-document write (the outbox);
the event is then published at once from what is in hand (no read back), bounded by the outbox
flush timeout; the relay retries what is left.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from order_service import domain, events
from order_service.repository import OrderRepository
from order_service.schemas import OrderOut, ProductOut
from order_service.settings import OrderSettings
from shared.auth import Caller
from shared.errors import Conflict, NotFound
from shared.events.models import OrderStatus
from shared.logging import get_logger
from shared.outbox import OUTBOX_FIELD, OutboxRelay, outbox_entry
from shared.runtime import ServiceRuntime
from shared.times import as_utc

log = get_logger(__name__)


def order_out(order: Mapping[str, Any]) -> OrderOut:
    """The public view of a stored order."""
    return OrderOut(
        id=order["_id"],
        userId=order["user_id"],
        products=[ProductOut.model_validate(p) for p in order["products"]],
        status=order["status"],
        createdAt=as_utc(order["created_at"]),
        updatedAt=as_utc(order["updated_at"]),
    )


@dataclass
class Orders:
    """What the HTTP routes call."""

    settings: OrderSettings
    runtime: ServiceRuntime
    repository: OrderRepository

    @property
    def _limits(self) -> domain.ProductLimits:
        return domain.ProductLimits(
            max_products=self.settings.order_max_products,
            id_max_length=self.settings.product_id_max_length,
            title_max_length=self.settings.product_title_max_length,
            category_max_length=self.settings.product_category_max_length,
            price_max=self.settings.product_price_max,
        )

    @property
    def _relay(self) -> OutboxRelay:
        assert self.runtime.relay is not None, "the outbox relay is set up in the lifespan"
        return self.runtime.relay

    async def place(self, caller: Caller, products: Sequence[domain.ProductInput]) -> OrderOut:
        """Store a new Placed order and queue `order.placed` in the same write."""
        lines = domain.clean_products(products, self._limits)
        order = domain.new_order_document(
            order_id=domain.new_order_id(),
            user_id=caller.user_id,
            products=lines,
            created_at=domain.now(),
        )
        entry = outbox_entry(self.runtime.publisher, events.order_placed(order))
        await self.repository.insert(order, [entry])
        await self._relay.flush_entries(self.repository.orders, {order["_id"]: [entry]})
        log.info("order placed", order_id=order["_id"], products=len(lines))
        return order_out(order)

    async def list_mine(self, caller: Caller, *, limit: int | None, offset: int) -> list[OrderOut]:
        """A page of the caller's orders, newest first (the page size is capped)."""
        size = min(limit or self.settings.orders_page_default, self.settings.orders_page_max)
        orders = await self.repository.of_user(caller.user_id, limit=size, offset=offset)
        return [order_out(o) for o in orders]

    async def change_status(self, caller: Caller, order_id: str, status: OrderStatus) -> OrderOut:
        """Apply a transition the caller may make; a concurrent change makes it CONFLICT."""
        order = await self.repository.by_id(order_id)
        if order is None:
            raise NotFound(domain.ORDER_NOT_FOUND)
        domain.check_transition(
            caller=caller, owner_id=order["user_id"], current=order["status"], target=status
        )
        changed_at = domain.now()
        event = events.order_status_changed(order, status=status, changed_at=changed_at)
        updated = await self.repository.change_status(
            order_id,
            expected=order["status"],
            status=status,
            changed_at=changed_at,
            outbox_entry=outbox_entry(self.runtime.publisher, event),
        )
        if updated is None:
            raise Conflict(domain.CHANGED_MEANWHILE)
        # Every pending event of the order, in order: one left over from an earlier change is
        # not overtaken by this one.
        pending = updated.pop(OUTBOX_FIELD, [])
        await self._relay.flush_entries(self.repository.orders, {order_id: pending})
        log.info(
            "order status changed",
            order_id=order_id,
            previous_status=order["status"],
            status=status,
            by_admin=caller.is_admin,
        )
        return order_out(updated)
