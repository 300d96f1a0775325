"""The order service's HTTP bodies; field names follow the public contract."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict

from order_service.domain import ProductInput
from shared.events.models import OrderStatus, ProductLine


# A `ProductInput` itself: the domain prices the body's products as they were validated.
class ProductIn(ProductInput):
    """One product of POST /orders: its catalog id and how many. `title`, `category` and
    `price` are accepted from older clients and not used (the catalog's are); the quantity's
    bounds are checked by the domain against the settings."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    title: str | None = None
    category: str | None = None
    price: float | None = None


class PlaceOrderIn(BaseModel):
    """POST /orders. The product count is checked by the domain against the settings."""

    model_config = ConfigDict(extra="forbid")

    products: list[ProductIn]
    idempotencyKey: str | None = None


class StatusIn(BaseModel):
    """POST /orders/{order_id}/status."""

    model_config = ConfigDict(extra="forbid")

    status: OrderStatus


class OrderOut(BaseModel):
    id: str
    userId: str
    # The lines as priced (a new order's own models; a stored one's read back).
    products: list[ProductLine]
    # Sum of unit price x quantity (None for orders stored before the catalog priced them).
    total: float | None = None
    status: OrderStatus
    createdAt: datetime
    updatedAt: datetime


class RatingOut(BaseModel):
    rate: float
    count: int


class CatalogProductOut(BaseModel):
    """A catalog product in the public contract's spelling."""

    productId: str
    title: str
    category: str
    price: float
    description: str
    image: str
    rating: RatingOut


class ProductPageOut(BaseModel):
    """GET /products."""

    items: list[CatalogProductOut]
    endCursor: str | None
    hasNextPage: bool
