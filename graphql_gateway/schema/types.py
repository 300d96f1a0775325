"""The types of the public API (DESIGN section 4), and how each is read from a service's JSON."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import Enum
from typing import Any

import strawberry

from shared.events import NotificationCreated, OrderStatusChanged


@strawberry.enum(description="What a user wants to receive by email.")
class Preference(Enum):
    promotions = "promotions"
    order_updates = "order_updates"
    recommendations = "recommendations"


@strawberry.enum(description="Where an order is: Placed -> Shipped -> Delivered, or Cancelled.")
class OrderStatus(Enum):
    Placed = "Placed"
    Shipped = "Shipped"
    Delivered = "Delivered"
    Cancelled = "Cancelled"


@strawberry.enum(description="What a notification is about.")
class NotificationType(Enum):
    promotion = "promotion"
    order_update = "order_update"
    recommendation = "recommendation"
    alert = "alert"
    other = "other"


def utc(value: str | datetime) -> datetime:
    """An ISO 8601 timestamp from a service or an event, in UTC (a naive one is taken as UTC)."""
    parsed = datetime.fromisoformat(value) if isinstance(value, str) else value
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


@strawberry.input(description="A product of an order.")
class ProductInput:
    productId: strawberry.ID
    title: str
    category: str
    price: float | None = strawberry.UNSET

    def to_json(self) -> dict[str, Any]:
        """The product as the order service takes it."""
        price = None if self.price is strawberry.UNSET else self.price
        return {
            "productId": str(self.productId),
            "title": self.title,
            "category": self.category,
            "price": price,
        }


@strawberry.type(description="A product of the catalog, of an order or of a recommendation.")
class Product:
    productId: strawberry.ID
    title: str
    category: str
    price: float | None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Product:
        """From `{productId, title, category, price}`."""
        price = data.get("price")
        return cls(
            productId=strawberry.ID(str(data["productId"])),
            title=str(data["title"]),
            category=str(data["category"]),
            price=float(price) if price is not None else None,
        )


@strawberry.type(description="One past order in a user's history.")
class PurchaseHistory:
    orderId: strawberry.ID
    products: list[Product]
    purchaseDate: datetime

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PurchaseHistory:
        """From `{orderId, products, purchaseDate}`."""
        return cls(
            orderId=strawberry.ID(str(data["orderId"])),
            products=[Product.from_json(p) for p in data.get("products", [])],
            purchaseDate=utc(data["purchaseDate"]),
        )


@strawberry.type(description="A user as they see themselves.")
class User:
    id: strawberry.ID
    name: str
    email: str
    preferences: list[Preference]
    order_status: str = strawberry.field(
        description='Status of the latest order, "none" before any.'
    )
    orders: list[Product] = strawberry.field(description="Products of the latest order.")
    purchase_history: list[PurchaseHistory]
    emailVerified: bool = strawberry.field(
        description="Whether the user confirmed the address through the emailed link."
    )

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> User:
        """From the user service's user JSON."""
        return cls(
            id=strawberry.ID(str(data["id"])),
            name=str(data["name"]),
            email=str(data["email"]),
            emailVerified=bool(data.get("emailVerified", False)),
            preferences=[Preference(p) for p in data.get("preferences", [])],
            order_status=str(data.get("order_status") or "none"),
            orders=[Product.from_json(p) for p in data.get("orders", [])],
            purchase_history=[
                PurchaseHistory.from_json(h) for h in data.get("purchase_history", [])
            ],
        )


@strawberry.type(description="An order of the caller.")
class Order:
    id: strawberry.ID
    userId: strawberry.ID
    products: list[Product]
    status: OrderStatus
    createdAt: datetime
    updatedAt: datetime

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Order:
        """From `{id, userId, products, status, createdAt, updatedAt}`."""
        return cls(
            id=strawberry.ID(str(data["id"])),
            userId=strawberry.ID(str(data["userId"])),
            products=[Product.from_json(p) for p in data.get("products", [])],
            status=OrderStatus(data["status"]),
            createdAt=utc(data["createdAt"]),
            updatedAt=utc(data["updatedAt"]),
        )

    @classmethod
    def from_event(cls, event: OrderStatusChanged) -> Order:
        """The order as an `order.status-changed` event describes it after the change."""
        return cls(
            id=strawberry.ID(event.order_id),
            userId=strawberry.ID(event.user_id),
            products=[Product.from_json(line.model_dump()) for line in event.products],
            status=OrderStatus(event.status),
            createdAt=utc(event.created_at),
            updatedAt=utc(event.changed_at),
        )


@strawberry.type(description="An in-app notification.")
class Notification:
    id: strawberry.ID
    userId: strawberry.ID
    type: NotificationType
    content: str
    sentAt: datetime
    read: bool

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Notification:
        """From `{id, userId, type, content, sentAt, read}`."""
        return cls(
            id=strawberry.ID(str(data["id"])),
            userId=strawberry.ID(str(data["userId"])),
            type=NotificationType(data["type"]),
            content=str(data["content"]),
            sentAt=utc(data["sentAt"]),
            read=bool(data["read"]),
        )

    @classmethod
    def from_event(cls, event: NotificationCreated) -> Notification:
        """A notification just stored, as `notification.created` announces it (unread)."""
        return cls(
            id=strawberry.ID(event.notification_id),
            userId=strawberry.ID(event.user_id),
            type=NotificationType(event.type),
            content=event.content,
            sentAt=utc(event.sent_at),
            read=False,
        )


@strawberry.type(
    description="A short-lived access token for the Authorization header, the refresh token "
    "that gets the next one (refreshSession), and the user."
)
class AuthPayload:
    token: str
    user: User
    refreshToken: str

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> AuthPayload:
        """From `{token, refreshToken, user}`."""
        return cls(
            token=str(data["token"]),
            refreshToken=str(data["refreshToken"]),
            user=User.from_json(data["user"]),
        )
