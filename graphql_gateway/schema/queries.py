"""Query fields: thin resolvers that authenticate, read through the cache, call a client."""

from __future__ import annotations

import hashlib
from typing import Any

import orjson
import strawberry
from strawberry.types import Info

from graphql_gateway.cache import DETAILS_VIEW, notifications_view
from graphql_gateway.schema.context import GatewayContext
from graphql_gateway.schema.types import (
    DEFAULT_PAGE,
    CatalogProduct,
    Notification,
    Order,
    Product,
    ProductPage,
    User,
)
from shared.errors import NotFound

GatewayInfo = Info[GatewayContext, None]


def public_name(kind: str, params: dict[str, str]) -> str:
    """The cache name of a public answer: its kind and its parameters (hashed: any text a
    caller searches for makes a bounded, safe key)."""
    digest = hashlib.blake2b(orjson.dumps(params, option=orjson.OPT_SORT_KEYS), digest_size=16)
    return f"{kind}:{digest.hexdigest()}"


def message_of(raw: bytes) -> str:
    """The sentence of a `{"message": ...}` answer."""
    body: dict[str, Any] = orjson.loads(raw)
    return str(body["message"])


@strawberry.type
class Query:
    @strawberry.field(description="The caller's profile, order status and purchase history.")
    async def getUserDetails(self, info: GatewayInfo) -> User:
        ctx = info.context
        credentials = ctx.credentials()
        raw = await ctx.cache.read_through(
            credentials.caller.user_id,
            DETAILS_VIEW,
            lambda: ctx.clients.users.me(credentials),
        )
        return User.from_json(orjson.loads(raw))

    @strawberry.field(description="The caller's notifications, newest first.")
    async def getUserNotifications(
        self, info: GatewayInfo, unreadOnly: bool | None = True
    ) -> list[Notification]:
        ctx = info.context
        credentials = ctx.credentials()
        unread_only = unreadOnly is not False
        raw = await ctx.cache.read_through(
            credentials.caller.user_id,
            notifications_view(unread_only=unread_only),
            lambda: ctx.clients.notifications.list(credentials, unread_only=unread_only),
        )
        return [Notification.from_json(item) for item in orjson.loads(raw)]

    @strawberry.field(description="The caller's orders, newest first.")
    async def orders(self, info: GatewayInfo) -> list[Order]:
        ctx = info.context
        raw = await ctx.clients.orders.list_orders(ctx.credentials())
        return [Order.from_json(item) for item in orjson.loads(raw)]

    @strawberry.field(description="The latest products recommended to the caller.")
    async def recommendations(self, info: GatewayInfo) -> list[Product]:
        ctx = info.context
        raw = await ctx.clients.recommendations.latest(ctx.credentials())
        return [Product.from_json(item) for item in orjson.loads(raw)]

    @strawberry.field(description="Start computing recommendations for the caller.")
    async def productRecommendation(self, info: GatewayInfo) -> str:
        ctx = info.context
        credentials = ctx.credentials()
        await ctx.limits.recommendation(credentials.caller.user_id)
        return message_of(await ctx.clients.recommendations.request(credentials))

    @strawberry.field(
        description="A page of the catalog (public: no token), optionally of one category "
        "and matching a text in the title or description. Pass endCursor as `after`."
    )
    async def products(
        self,
        info: GatewayInfo,
        category: str | None = None,
        search: str | None = None,
        first: int | None = 20,
        after: str | None = None,
    ) -> ProductPage:
        ctx = info.context
        params = {"first": str(DEFAULT_PAGE if first is None else first)}
        for name, value in (("category", category), ("search", search), ("after", after)):
            if value is not None:
                params[name] = value
        raw = await ctx.cache.read_public(
            public_name("products", params),
            ctx.gateway.settings.catalog_cache_ttl_seconds,
            lambda: ctx.clients.orders.products(params),
        )
        return ProductPage.from_json(orjson.loads(raw))

    @strawberry.field(description="One catalog product (public: no token); null if unknown.")
    async def product(self, info: GatewayInfo, productId: strawberry.ID) -> CatalogProduct | None:
        ctx = info.context
        product_id = str(productId)
        try:
            raw = await ctx.cache.read_public(
                public_name("product", {"productId": product_id}),
                ctx.gateway.settings.catalog_cache_ttl_seconds,
                lambda: ctx.clients.orders.product(product_id),
            )
        except NotFound:
            return None
        return CatalogProduct.from_json(orjson.loads(raw))
