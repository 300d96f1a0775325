"""The types of the public API (docs/contract.md section 4), and how each is read from a
service's JSON."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import Enum
from typing import Annotated, Any

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
    # Each member is a strawberry.enum_value (for its description); the decorator makes its
    # value the plain string again, which this tells type checkers.
    _value_: str

    promotions = strawberry.enum_value(
        "promotions", description="Promotions (sent while subscribed with taskSchedular)."
    )
    order_updates = strawberry.enum_value(
        "order_updates",
        description="An order was placed or changed status (the only one on by default).",
    )
    recommendations = strawberry.enum_value(
        "recommendations", description="New recommendations are ready (productRecommendation)."
    )


@strawberry.enum(description="Where an order is: Placed -> Shipped -> Delivered, or Cancelled.")
class OrderStatus(Enum):
    # As Preference's: the values are strings.
    _value_: str

    Placed = strawberry.enum_value(
        "Placed", description="Just placed: its owner may still cancel it."
    )
    Shipped = strawberry.enum_value(
        "Shipped", description="On its way: only an admin may cancel it now."
    )
    Delivered = strawberry.enum_value("Delivered", description="Arrived; final.")
    Cancelled = strawberry.enum_value("Cancelled", description="Cancelled; final.")


@strawberry.enum(description="What a notification is about.")
class NotificationType(Enum):
    # As Preference's: the values are strings.
    _value_: str

    promotion = strawberry.enum_value(
        "promotion", description="A promotion (while subscribed with taskSchedular)."
    )
    order_update = strawberry.enum_value(
        "order_update", description="One of the user's orders was placed or changed status."
    )
    recommendation = strawberry.enum_value(
        "recommendation", description="New recommendations are ready (see recommendations)."
    )
    alert = strawberry.enum_value(
        "alert", description="About the account: a verification or password reset link was sent."
    )
    other = strawberry.enum_value("other", description="Anything else, such as the welcome.")


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
    productId: strawberry.ID = strawberry.field(
        description='A catalog product\'s id (CatalogProduct.productId, e.g. "1"); one not in '
        "the catalog is BAD_USER_INPUT."
    )
    quantity: int | None = strawberry.field(
        default=1, description="How many: 1 to 99 (default 1; null also means 1)."
    )
    title: str | None = strawberry.field(
        default=strawberry.UNSET, description="Ignored (older clients): the catalog's is stored."
    )
    category: str | None = strawberry.field(
        default=strawberry.UNSET, description="Ignored (older clients): the catalog's is stored."
    )
    price: float | None = strawberry.field(
        default=strawberry.UNSET, description="Ignored (older clients): the catalog prices it."
    )

    def to_json(self) -> dict[str, Any]:
        """The product as the order service takes it (id and quantity: nothing else is used)."""
        quantity = 1 if self.quantity is None else self.quantity
        return {"productId": str(self.productId), "quantity": quantity}


@strawberry.type(description="A product of an order or of a recommendation.")
class Product:
    productId: strawberry.ID = strawberry.field(
        description="The catalog id of the product (see the product query)."
    )
    title: str = strawberry.field(description="The product's name, from the catalog.")
    category: str = strawberry.field(description="The catalog category, e.g. sports.")
    price: float | None = strawberry.field(
        description="The unit price, as the catalog had it when ordered; null if unknown "
        "(lines stored before orders were priced)."
    )
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
    rate: float = strawberry.field(description="The average rating (0 when not rated yet).")
    count: int = strawberry.field(description="How many ratings the average is of.")


@strawberry.type(description="A product of the catalog: what orders are priced from.")
class CatalogProduct:
    productId: strawberry.ID = strawberry.field(
        description="The catalog id: order it with ProductInput.productId."
    )
    title: str = strawberry.field(description="The product's name.")
    category: str = strawberry.field(
        description="Its category, e.g. sports; products(category:) filters on it."
    )
    price: float = strawberry.field(description="The unit price an order is charged now.")
    description: str = strawberry.field(
        description="A longer text about the product (may be empty)."
    )
    image: str = strawberry.field(description="The URL of the product's picture (may be empty).")
    rating: Rating = strawberry.field(description="What buyers thought of it.")

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
    items: list[CatalogProduct] = strawberry.field(
        description="The products of this page, in catalog order."
    )
    endCursor: str | None = strawberry.field(
        description="An opaque cursor after this page's last product: pass it as `after` for "
        "the next page; null when the page is empty."
    )
    hasNextPage: bool = strawberry.field(description="Whether more products match after this page.")

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
    orderId: strawberry.ID = strawberry.field(description="The order's id (Order.id).")
    products: list[Product] = strawberry.field(description="What the order holds.")
    purchaseDate: datetime = strawberry.field(
        description="When the order was placed (ISO 8601, UTC)."
    )

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
    id: strawberry.ID = strawberry.field(description="The user's id (32 hex characters).")
    name: str = strawberry.field(description="The name given at registration.")
    email: str = strawberry.field(
        description="The email address, lower-case: the login and where mail goes."
    )
    preferences: list[Preference] = strawberry.field(
        description="Which emails the user receives (in-app notifications are always stored)."
    )
    order_status: str = strawberry.field(
        description='Status of the latest order, "none" before any.'
    )
    orders: list[Product] = strawberry.field(description="Products of the latest order.")
    # The Authorization a nested read of this user uses: the request's, or (in the answer of
    # registerUser and login, asked without one) the token just issued.
    authorization: strawberry.Private[str | None] = None
    # A resolver rather than a field, so that it follows purchase_history as in the contract.
    email_verified: strawberry.Private[bool] = False

    @strawberry.field(description="The user's orders, newest first.")
    async def purchase_history(
        self,
        info: Info[GatewayContext, None],
        first: Annotated[
            int | None,
            strawberry.argument(
                description="How many of the newest orders: default 20, at most 100 (more is "
                "cut to 100); less than 1 is BAD_USER_INPUT."
            ),
        ] = DEFAULT_PAGE,
    ) -> list[PurchaseHistory]:
        ctx = info.context
        credentials = (
            authenticate(self.authorization, ctx.settings)
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


@strawberry.type(
    description="An order: the caller's own (an admin's updateOrderStatus answers anyone's)."
)
class Order:
    id: strawberry.ID = strawberry.field(
        description="The order's id (24 hex characters): pass it to updateOrderStatus."
    )
    userId: strawberry.ID = strawberry.field(description="The id of the user who placed it.")
    products: list[Product] = strawberry.field(
        description="The ordered products and quantities, priced from the catalog."
    )
    total: float | None = strawberry.field(
        description="Unit prices times quantities (null on orders placed before pricing)."
    )
    status: OrderStatus = strawberry.field(description="Where the order is now.")
    createdAt: datetime = strawberry.field(description="When it was placed (ISO 8601, UTC).")
    updatedAt: datetime = strawberry.field(
        description="When its status last changed (ISO 8601, UTC); createdAt until then."
    )

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
    id: strawberry.ID = strawberry.field(
        description="The notification's id: pass it to markNotificationRead."
    )
    userId: strawberry.ID = strawberry.field(description="The id of the user it is for.")
    type: NotificationType = strawberry.field(description="What it is about.")
    content: str = strawberry.field(description="The text to show the user.")
    sentAt: datetime = strawberry.field(description="When it was stored (ISO 8601, UTC).")
    read: bool = strawberry.field(
        description="Whether it was read: marked with markNotificationRead, or its email opened."
    )

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
    token: str = strawberry.field(
        description="The access token: send it as `Authorization: Bearer <token>`; it expires "
        "(15 minutes by default), then UNAUTHENTICATED: get a new one with refreshSession."
    )
    user: User = strawberry.field(description="The user the tokens are for.")
    refreshToken: str = strawberry.field(
        description="Pass it once to refreshSession for the next pair (valid 30 days by "
        "default); keep it secret."
    )

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> AuthPayload:
        """From `{token, refreshToken, user}`."""
        token = str(data["token"])
        return cls(
            token=token,
            refreshToken=str(data["refreshToken"]),
            user=User.from_json(data["user"], f"Bearer {token}"),
        )
