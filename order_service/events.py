"""The events the order service publishes (it consumes none).

Both go through the outbox of the order's document, keyed by the order's user id:
`order.placed` (`OrderPlaced`) when an order is stored, `order.status-changed`
(`OrderStatusChanged`) on every transition.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from order_service.domain import NewOrder, products_of
from shared.events.models import OrderPlaced, OrderStatus, OrderStatusChanged
from shared.times import as_utc


def order_placed(order: NewOrder) -> OrderPlaced:
    """The event announcing a new order; it carries the order's own lines."""
    return OrderPlaced(
        order_id=order.id,
        user_id=order.user_id,
        products=order.products,
        placed_at=as_utc(order.created_at),
    )


def order_status_changed(
    order: Mapping[str, Any], *, status: OrderStatus, changed_at: datetime
) -> OrderStatusChanged:
    """The event announcing the move of a stored `order` (as read before the change) to
    `status`."""
    return OrderStatusChanged(
        order_id=order["_id"],
        user_id=order["user_id"],
        previous_status=order["status"],
        status=status,
        products=products_of(order),
        created_at=as_utc(order["created_at"]),
        changed_at=changed_at,
    )
