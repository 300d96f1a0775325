"""The types of the public API (DESIGN section 4), and how each is read from a service's JSON."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import Enum
from typing import Any

import orjson
import strawberry
from strawberry.types import Info

from graphql_gateway.auth import authenticate
from graphql_gateway.cache import purchases_view
from graphql_gateway.schema.context import GatewayContext
from shared.events import NotificationCreated, OrderStatusChanged
from shared.events.models import total_of

# The page size of `products` and `purchase_history` when the caller sends none.
DEFAULT_PAGE = 20


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


@strawberry.input(
    description="A product of an order: a catalog id and how many (1-99). The order stores the "
    "catalog's title, category and price; ones sent here (older clients) are ignored."
)
class ProductInput:
    productId: strawberry.ID
    quantity: int | None = 1
    title: str | None = strawberry.UNSET
    category: str | None = strawberry.UNSET
    price: float | None = strawberry.UNSET

    def to_json(self) -> dict[str, Any]:
        """The product as the order service takes it (id and quantity: nothing else is used)."""
        quantity = 1 if self.quantity is None else self.quantity
        return {"productId": str(self.productId), "quantity": quantity}


@strawberry.type(description="A product of an order or of a recommendation.")
class Product:
    productId: strawberry.ID
    title: str
    category: str
    price: float | None = strawberry.field(description="The unit price.")
    quantity: int = strawberry.field(description="How many (1 on a recommendation).")

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Product:
        """From `{productId, title, category, price, quantity?}`."""
        price = data.get("price")
        return cls(
            productId=strawberry.ID(str(data["productId"])),
            title=str(data["title"]),
            category=str(data["category"]),
            price=float(price) if price is not None else None,
            quantity=int(data.get("quantity") or 1),
        )


@strawberry.type(description="A catalog product's average rating and how many it averages.")
class Rating:
    rate: float
    count: int


@strawberry.type(description="A product of the catalog: what orders are priced from.")
class CatalogProduct:
    productId: strawberry.ID
    title: str
    category: str
    price: float
    description: str
    image: str
    rating: Rating

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CatalogProduct:
        """From the order service's catalog product JSON."""
        rating = data.get("rating") or {}
        return cls(
            productId=strawberry.ID(str(data["productId"])),
            title=str(data["title"]),
            category=str(data["category"]),
            price=float(data["price"]),
            description=str(data.get("description") or ""),
            image=str(data.get("image") or ""),
            rating=Rating(rate=float(rating.get("rate", 0)), count=int(rating.get("count", 0))),
        )


@strawberry.type(description="A page of the catalog; pass endCursor as `after` for the next.")
class ProductPage:
    items: list[CatalogProduct]
    endCursor: str | None
    hasNextPage: bool

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ProductPage:
        """From `{items, endCursor, hasNextPage}`."""
        return cls(
            items=[CatalogProduct.from_json(item) for item in data.get("items", [])],
            endCursor=data.get("endCursor"),
            hasNextPage=bool(data.get("hasNextPage")),
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
    # The Authorization a nested read of this user uses: the request's, or (in the answer of
    # registerUser and login, asked without one) the token just issued.
    authorization: strawberry.Private[str | None] = None
    # A resolver rather than a field, so that it follows purchase_history as in the contract.
    email_verified: strawberry.Private[bool] = False

    @strawberry.field(description="The newest purchases (first: how many, at most 100).")
    async def purchase_history(
        self, info: Info[GatewayContext, None], first: int | None = DEFAULT_PAGE
    ) -> list[PurchaseHistory]:
        ctx = info.context
        credentials = (
            authenticate(self.authorization, ctx.gateway.settings)
            if self.authorization is not None
            else ctx.credentials()
        )
        size = DEFAULT_PAGE if first is None else first
        raw = await ctx.cache.read_through(
            credentials.caller.user_id,
            purchases_view(size),
            lambda: ctx.clients.users.purchases(credentials, size),
        )
        return [PurchaseHistory.from_json(item) for item in orjson.loads(raw)]

    @strawberry.field(
        description="Whether the user confirmed the address through the emailed link."
    )
    def emailVerified(self) -> bool:
        return self.email_verified

    @classmethod
    def from_json(cls, data: dict[str, Any], authorization: str | None = None) -> User:
        """From the user service's user JSON."""
        return cls(
            id=strawberry.ID(str(data["id"])),
            name=str(data["name"]),
            email=str(data["email"]),
            email_verified=bool(data.get("emailVerified", False)),
            preferences=[Preference(p) for p in data.get("preferences", [])],
            order_status=str(data.get("order_status") or "none"),
            orders=[Product.from_json(p) for p in data.get("orders", [])],
            authorization=authorization,
        )


@strawberry.type(description="An order of the caller.")
class Order:
    id: strawberry.ID
    userId: strawberry.ID
    products: list[Product]
    total: float | None = strawberry.field(
        description="Unit prices times quantities (null on orders placed before pricing)."
    )
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
            total=float(data["total"]) if data.get("total") is not None else None,
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
            total=total_of(event.products),
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
        token = str(data["token"])
        return cls(
            token=token,
            refreshToken=str(data["refreshToken"]),
            user=User.from_json(data["user"], f"Bearer {token}"),
        )
