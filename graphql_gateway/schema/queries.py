"""Query fields: thin resolvers that authenticate, read through the cache, call a client."""

from __future__ import annotations

import hashlib
from typing import Annotated, Any

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


@strawberry.type(
    description="Reads. All but products and product need a token (`Authorization: Bearer "
    "<token>` from registerUser or login); without a valid one they answer UNAUTHENTICATED. "
    "The limits quoted are the defaults (the operator's settings). Any field may answer "
    "SERVICE_UNAVAILABLE while a service it needs is down."
)
class Query:
    @strawberry.field(
        description="The caller's profile, order status and purchase history. Needs a token."
    )
    async def getUserDetails(self, info: GatewayInfo) -> User:
        ctx = info.context
        credentials = ctx.credentials()
        raw = await ctx.cache.read_through(
            credentials.caller.user_id,
            DETAILS_VIEW,
            lambda: ctx.clients.users.me(credentials),
        )
        return User.from_json(orjson.loads(raw))

    @strawberry.field(
        description="The caller's notifications, newest first (at most 100). Needs a token."
    )
    async def getUserNotifications(
        self,
        info: GatewayInfo,
        unreadOnly: Annotated[
            bool | None,
            strawberry.argument(description="Only the unread ones (default true); false: all."),
        ] = True,
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

    @strawberry.field(
        description="The caller's newest orders (20 by default), newest first. Needs a token."
    )
    async def orders(self, info: GatewayInfo) -> list[Order]:
        ctx = info.context
        raw = await ctx.clients.orders.list_orders(ctx.credentials())
        return [Order.from_json(item) for item in orjson.loads(raw)]

    @strawberry.field(
        description="The products last recommended to the caller; empty before the first "
        "productRecommendation finishes. Needs a token."
    )
    async def recommendations(self, info: GatewayInfo) -> list[Product]:
        ctx = info.context
        raw = await ctx.clients.recommendations.latest(ctx.credentials())
        return [Product.from_json(item) for item in orjson.loads(raw)]

    @strawberry.field(
        description="Start computing recommendations for the caller; answers a message at "
        "once, and the list arrives in recommendations and as a notification. Needs a token; "
        "at most 10 a minute by default (RATE_LIMITED)."
    )
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
        category: Annotated[
            str | None,
            strawberry.argument(description="Only this category, ignoring case (e.g. sports)."),
        ] = None,
        search: Annotated[
            str | None,
            strawberry.argument(
                description="Only products with this text in the title or description, "
                "ignoring case."
            ),
        ] = None,
        first: Annotated[
            int | None,
            strawberry.argument(
                description="The page size: default 20, at most 100 (more is cut to 100); less "
                "than 1 is BAD_USER_INPUT."
            ),
        ] = 20,
        after: Annotated[
            str | None,
            strawberry.argument(
                description="The previous page's endCursor (none: the first page); a cursor "
                "this API did not give is BAD_USER_INPUT."
            ),
        ] = None,
    ) -> ProductPage:
        ctx = info.context
        params = {"first": str(DEFAULT_PAGE if first is None else first)}
        for name, value in (("category", category), ("search", search), ("after", after)):
            if value is not None:
                params[name] = value
        raw = await ctx.cache.read_public(
            public_name("products", params),
            ctx.settings.catalog_cache_ttl_seconds,
            lambda: ctx.clients.orders.products(params),
        )
        return ProductPage.from_json(orjson.loads(raw))

    @strawberry.field(description="One catalog product (public: no token); null if unknown.")
    async def product(
        self,
        info: GatewayInfo,
        productId: Annotated[
            strawberry.ID, strawberry.argument(description='The catalog id, e.g. "1".')
        ],
    ) -> CatalogProduct | None:
        ctx = info.context
        product_id = str(productId)
        try:
            raw = await ctx.cache.read_public(
                public_name("product", {"productId": product_id}),
                ctx.settings.catalog_cache_ttl_seconds,
                lambda: ctx.clients.orders.product(product_id),
            )
        except NotFound:
            return None
        return CatalogProduct.from_json(orjson.loads(raw))
