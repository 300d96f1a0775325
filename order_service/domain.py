"""The order rules: pricing from the catalog, the status machine and who may move it. Pure."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from bson import ObjectId
from pydantic import BaseModel, ConfigDict

from shared.auth import Caller
from shared.catalog.models import Product
from shared.errors import BadUserInput, Conflict, Forbidden, NotFound
from shared.events.models import OrderStatus, ProductLine, total_of
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
    """The limits of order input and of the lines stored (from the settings)."""

    max_products: int
    id_max_length: int
    max_quantity: int
    title_max_length: int
    category_max_length: int


class ProductInput(BaseModel):
    """A product as the caller asks for it: an id and a quantity (the body of POST /orders is
    validated into these once; the rules below check them against the settings)."""

    model_config = ConfigDict(frozen=True)

    productId: str
    quantity: int = 1


def _clean_id(value: str, limits: ProductLimits, position: int) -> str:
    cleaned = value.strip()
    if not cleaned:
        raise BadUserInput(f"Product {position}: productId must not be empty.")
    if len(cleaned) > limits.id_max_length:
        raise BadUserInput(
            f"Product {position}: productId must be at most {limits.id_max_length} characters."
        )
    return cleaned


def _check_quantity(quantity: int, limits: ProductLimits, position: int) -> int:
    if not 1 <= quantity <= limits.max_quantity:
        raise BadUserInput(f"Product {position}: quantity must be from 1 to {limits.max_quantity}.")
    return quantity


def price_products(
    products: Sequence[ProductInput], catalog: Mapping[str, Product], limits: ProductLimits
) -> list[ProductLine]:
    """The order's lines as the catalog prices them; an unknown id, a repeated id, a bad
    quantity or too many products is bad input naming the product."""
    if not products:
        raise BadUserInput("An order needs at least one product.")
    if len(products) > limits.max_products:
        raise BadUserInput(f"An order may hold at most {limits.max_products} products.")
    lines: list[ProductLine] = []
    seen: set[str] = set()
    for n, p in enumerate(products, start=1):
        product_id = _clean_id(p.productId, limits, n)
        quantity = _check_quantity(p.quantity, limits, n)
        if product_id in seen:
            raise BadUserInput(
                f'Product {n}: "{product_id}" is listed twice; order it once with a quantity.'
            )
        seen.add(product_id)
        found = catalog.get(product_id)
        if found is None:
            raise BadUserInput(f'Product {n}: there is no product "{product_id}" in the catalog.')
        lines.append(
            ProductLine(
                productId=found.id,
                # Bounded, so every order (and every message carrying it) has a known maximum.
                title=found.title[: limits.title_max_length],
                category=found.category[: limits.category_max_length],
                price=found.price,
                quantity=quantity,
            )
        )
    return lines


def order_total(lines: Sequence[ProductLine]) -> float:
    """The order's total: unit prices times quantities, in exact cents."""
    return total_of(lines)


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


def check_filter(value: str | None, name: str, max_length: int) -> str | None:
    """A catalog filter as given; longer than the limit is bad input."""
    if value is not None and len(value) > max_length:
        raise BadUserInput(f"{name} must be at most {max_length} characters.")
    return value


def check_idempotency_key(key: str | None, max_length: int) -> str | None:
    """The caller's idempotency key as given (None: none); empty or too long is bad input."""
    if key is None:
        return None
    if not key or len(key) > max_length:
        raise BadUserInput(f"idempotencyKey must be 1 to {max_length} characters.")
    return key


def idempotency_id(user_id: str, key: str) -> str:
    """Where a user's key is remembered: a digest, so any key makes a bounded, safe `_id`
    and one user's key never names another's order."""
    digest = hashlib.sha256(f"{user_id}\x00{key}".encode())
    return digest.hexdigest()


def new_order_id() -> str:
    """A new order id: an ObjectId in hex (ids made later by one process sort later)."""
    return str(ObjectId())


def now() -> datetime:
    """The current time in UTC, at the millisecond precision MongoDB stores."""
    return stored_now()


@dataclass(frozen=True, slots=True)
class NewOrder:
    """An order being placed: its lines stay the catalog-priced models until it is written
    (`document`), and its event and its answer are made from the same ones."""

    id: str
    user_id: str
    products: list[ProductLine]
    created_at: datetime
    total: float = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "total", order_total(self.products))

    def document(self) -> dict[str, Any]:
        """The stored order, Placed (its pending events are added by the repository)."""
        return {
            "_id": self.id,
            "user_id": self.user_id,
            "products": [p.model_dump() for p in self.products],
            "total": self.total,
            "status": PLACED,
            "created_at": self.created_at,
            "updated_at": self.created_at,
        }


def products_of(order: Mapping[str, Any]) -> list[ProductLine]:
    """A stored order's products as event lines (read back from the store)."""
    return [ProductLine.model_validate(p) for p in order["products"]]
