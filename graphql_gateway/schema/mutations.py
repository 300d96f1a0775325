"""Mutation fields: thin resolvers that call a client and drop the cache entries they change."""

from __future__ import annotations

import orjson
import strawberry

from graphql_gateway.schema.queries import GatewayInfo, message_of
from graphql_gateway.schema.types import (
    AuthPayload,
    Notification,
    Order,
    OrderStatus,
    Preference,
    ProductInput,
    User,
)


@strawberry.type
class Mutation:
    @strawberry.mutation(description="Create an account; answers a token and the new user.")
    async def registerUser(
        self,
        info: GatewayInfo,
        name: str,
        email: str,
        password: str,
        preferences: list[Preference] | None = strawberry.UNSET,
    ) -> AuthPayload:
        # Left out (or null): the user service applies its default.
        chosen = None if not isinstance(preferences, list) else [p.value for p in preferences]
        raw = await info.context.clients.users.register(
            name=name, email=email, password=password, preferences=chosen
        )
        return AuthPayload.from_json(orjson.loads(raw))

    @strawberry.mutation(description="Log in; answers a token and the user.")
    async def login(self, info: GatewayInfo, email: str, password: str) -> AuthPayload:
        raw = await info.context.clients.users.login(email=email, password=password)
        return AuthPayload.from_json(orjson.loads(raw))

    @strawberry.mutation(description="Choose what the caller receives by email.")
    async def updateUserPreferences(self, info: GatewayInfo, preferences: list[Preference]) -> User:
        ctx = info.context
        credentials = ctx.credentials()
        try:
            raw = await ctx.clients.users.update_preferences(
                credentials, [p.value for p in preferences]
            )
        finally:
            # Also after a timeout: the change may have been applied.
            await ctx.cache.forget_user(credentials.caller.user_id)
        return User.from_json(orjson.loads(raw))

    @strawberry.mutation(
        description="Order catalog products. With an idempotencyKey, a repeat with the same key "
        "within 24 hours answers the first order and places nothing new."
    )
    async def placeOrder(
        self,
        info: GatewayInfo,
        products: list[ProductInput],
        idempotencyKey: str | None = None,
    ) -> Order:
        ctx = info.context
        credentials = ctx.credentials()
        await ctx.limits.place_order(credentials.caller.user_id)
        try:
            raw = await ctx.clients.orders.place(
                credentials, [p.to_json() for p in products], idempotencyKey
            )
        finally:
            # The history changes asynchronously; the user service's event drops it again.
            await ctx.cache.forget_user(credentials.caller.user_id)
        return Order.from_json(orjson.loads(raw))

    @strawberry.mutation(description="Move an order to another status.")
    async def updateOrderStatus(
        self, info: GatewayInfo, orderId: strawberry.ID, order_status: OrderStatus
    ) -> Order:
        ctx = info.context
        credentials = ctx.credentials()
        try:
            raw = await ctx.clients.orders.update_status(
                credentials, str(orderId), order_status.value
            )
        finally:
            await ctx.cache.forget_user(credentials.caller.user_id)
        order = Order.from_json(orjson.loads(raw))
        if order.userId != credentials.caller.user_id:
            # An admin changed someone else's order: the owner's details are stale.
            await ctx.cache.forget_user(str(order.userId))
        return order

    @strawberry.mutation(description="Subscribe the caller to promotions.")
    async def taskSchedular(self, info: GatewayInfo) -> str:
        ctx = info.context
        return message_of(await ctx.clients.scheduler.subscribe(ctx.credentials()))

    @strawberry.mutation(description="Unsubscribe the caller from promotions.")
    async def cancelTaskSchedular(self, info: GatewayInfo) -> str:
        ctx = info.context
        return message_of(await ctx.clients.scheduler.unsubscribe(ctx.credentials()))

    @strawberry.mutation(description="Mark one of the caller's notifications read.")
    async def markNotificationRead(self, info: GatewayInfo, id: strawberry.ID) -> Notification:
        ctx = info.context
        credentials = ctx.credentials()
        try:
            raw = await ctx.clients.notifications.mark_read(credentials, str(id))
        finally:
            await ctx.cache.forget_user(credentials.caller.user_id)
        return Notification.from_json(orjson.loads(raw))
