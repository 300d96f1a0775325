"""The order rules: product validation, the status machine and who may move it. Pure."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bson import ObjectId

from shared.auth import Caller
from shared.errors import BadUserInput, Conflict, Forbidden, NotFound
from shared.events.models import OrderStatus, ProductLine
from shared.times import stored_now

PLACED: OrderStatus = "Placed"
SHIPPED: OrderStatus = "Shipped"
DELIVERED: OrderStatus = "Delivered"
CANCELLED: OrderStatus = "Cancelled"

# Placed -> Shipped -> Delivered; Placed or Shipped -> Cancelled. Nothing leaves Delivered or
# Cancelled, and no status is entered twice.
TRANSITIONS: dict[OrderStatus, frozenset[OrderStatus]] = {
    PLACED: frozenset({SHIPPED, CANCELLED}),
    SHIPPED: frozenset({DELIVERED, CANCELLED}),
    DELIVERED: frozenset(),
    CANCELLED: frozenset(),
}

ORDER_NOT_FOUND = "That order was not found."
CUSTOMER_MAY_ONLY_CANCEL = "Customers may only cancel their own orders."
CUSTOMER_CANCEL_TOO_LATE = "Only a Placed order can be cancelled; this one is already {status}."
CHANGED_MEANWHILE = "The order changed at the same time; reload it and try again."


@dataclass(frozen=True, slots=True)
class ProductLimits:
    """The limits of order input (from the settings)."""

    max_products: int
    id_max_length: int
    title_max_length: int
    category_max_length: int
    price_max: float


@dataclass(frozen=True, slots=True)
class ProductInput:
    """A product as the caller sent it, before cleaning."""

    productId: str
    title: str
    category: str
    price: float | None = None


def _clean_text(value: str, field: str, max_length: int, position: int) -> str:
    cleaned = value.strip()
    if not cleaned:
        raise BadUserInput(f"Product {position}: {field} must not be empty.")
    if len(cleaned) > max_length:
        raise BadUserInput(f"Product {position}: {field} must be at most {max_length} characters.")
    return cleaned


def _clean_price(price: float | None, limits: ProductLimits, position: int) -> float | None:
    if price is None:
        return None
    if not math.isfinite(price) or price < 0:
        raise BadUserInput(f"Product {position}: price must be a number of at least 0.")
    if price > limits.price_max:
        raise BadUserInput(f"Product {position}: price must be at most {limits.price_max:g}.")
    return float(price)


def clean_products(products: Sequence[ProductInput], limits: ProductLimits) -> list[ProductLine]:
    """The order's products, trimmed and checked; anything off is bad input."""
    if not products:
        raise BadUserInput("An order needs at least one product.")
    if len(products) > limits.max_products:
        raise BadUserInput(f"An order may hold at most {limits.max_products} products.")
    return [
        ProductLine(
            productId=_clean_text(p.productId, "productId", limits.id_max_length, n),
            title=_clean_text(p.title, "title", limits.title_max_length, n),
            category=_clean_text(p.category, "category", limits.category_max_length, n),
            price=_clean_price(p.price, limits, n),
        )
        for n, p in enumerate(products, start=1)
    ]


def check_transition(
    *, caller: Caller, owner_id: str, current: OrderStatus, target: OrderStatus
) -> None:
    """Raise unless this caller may move this order from `current` to `target`.

    Checked in this order: another user's order is NOT_FOUND for a customer (its existence is
    not revealed); a customer asking for anything but a cancel is FORBIDDEN; a transition the
    machine does not allow is CONFLICT; a customer cancelling a Shipped order is FORBIDDEN.
    An admin may apply any valid transition to any order.
    """
    if not caller.is_admin and caller.user_id != owner_id:
        raise NotFound(ORDER_NOT_FOUND)
    if not caller.is_admin and target != CANCELLED:
        raise Forbidden(CUSTOMER_MAY_ONLY_CANCEL)
    if target not in TRANSITIONS[current]:
        raise Conflict(f"An order that is {current} cannot become {target}.")
    if not caller.is_admin and current != PLACED:
        raise Forbidden(CUSTOMER_CANCEL_TOO_LATE.format(status=current))


def new_order_id() -> str:
    """A new order id: an ObjectId in hex (ids made later by one process sort later)."""
    return str(ObjectId())


def now() -> datetime:
    """The current time in UTC, at the millisecond precision MongoDB stores."""
    return stored_now()


def new_order_document(
    *, order_id: str, user_id: str, products: list[ProductLine], created_at: datetime
) -> dict[str, Any]:
    """The stored order (its pending events are added by the repository)."""
    return {
        "_id": order_id,
        "user_id": user_id,
        "products": [p.model_dump() for p in products],
        "status": PLACED,
        "created_at": created_at,
        "updated_at": created_at,
    }


def products_of(order: Mapping[str, Any]) -> list[ProductLine]:
    """A stored order's products as event lines."""
    return [ProductLine.model_validate(p) for p in order["products"]]
