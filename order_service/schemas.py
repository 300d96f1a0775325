"""The order service's HTTP bodies; field names follow the public contract."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict

from shared.events.models import OrderStatus


class ProductIn(BaseModel):
    """One product of POST /orders; lengths and the price are checked by the domain."""

    model_config = ConfigDict(extra="forbid")

    productId: str
    title: str
    category: str
    price: float | None = None


class PlaceOrderIn(BaseModel):
    """POST /orders. The product count is checked by the domain against the settings."""

    model_config = ConfigDict(extra="forbid")

    products: list[ProductIn]


class StatusIn(BaseModel):
    """POST /orders/{order_id}/status."""

    model_config = ConfigDict(extra="forbid")

    status: OrderStatus


class ProductOut(BaseModel):
    productId: str
    title: str
    category: str
    price: float | None = None


class OrderOut(BaseModel):
    id: str
    userId: str
    products: list[ProductOut]
    status: OrderStatus
    createdAt: datetime
    updatedAt: datetime
