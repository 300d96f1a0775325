"""Query fields: thin resolvers that authenticate, read through the cache, call a client."""

from __future__ import annotations

from typing import Any

import orjson
import strawberry
from strawberry.types import Info

from graphql_gateway.cache import DETAILS_VIEW, notifications_view
from graphql_gateway.schema.context import GatewayContext
from graphql_gateway.schema.types import Notification, Order, Product, User

GatewayInfo = Info[GatewayContext, None]


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
