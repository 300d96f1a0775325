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

    # --- sessions, verification and passwords (issue 13) ---

    @strawberry.mutation(
        description="A new token pair for a refresh token (no access token needed). The refresh "
        "token is rotated: use the new one next time; reusing an old one ends the session."
    )
    async def refreshSession(self, info: GatewayInfo, refreshToken: str) -> AuthPayload:
        raw = await info.context.clients.users.refresh(refreshToken)
        return AuthPayload.from_json(orjson.loads(raw))

    @strawberry.mutation(description="End the session of the caller's token (and its refresh).")
    async def logout(self, info: GatewayInfo) -> bool:
        ctx = info.context
        credentials = ctx.credentials()
        answer = orjson.loads(await ctx.clients.users.logout(credentials))
        caller = credentials.caller
        if caller.session_id is not None and caller.expires_at is not None:
            # At once here; `user.sessions-revoked` tells the same to every gateway.
            await ctx.cache.revoke_sessions([caller.session_id], caller.expires_at)
        return bool(answer["loggedOut"])

    @strawberry.mutation(
        description="Confirm an email address with the token of the emailed link (no access "
        "token needed); answers the user, now verified."
    )
    async def verifyEmail(self, info: GatewayInfo, token: str) -> User:
        ctx = info.context
        user = User.from_json(orjson.loads(await ctx.clients.users.verify_email(token)))
        await ctx.cache.forget_user(str(user.id))
        return user

    @strawberry.mutation(description="Email the caller a new verification link.")
    async def resendVerification(self, info: GatewayInfo) -> str:
        ctx = info.context
        return message_of(await ctx.clients.users.resend_verification(ctx.credentials()))

    @strawberry.mutation(
        description="Email a password reset link to the address if it has an account (no "
        "access token needed); the answer is the same either way."
    )
    async def requestPasswordReset(self, info: GatewayInfo, email: str) -> str:
        return message_of(await info.context.clients.users.request_password_reset(email))

    @strawberry.mutation(
        description="Set a new password with the token of the emailed reset link (no access "
        "token needed); every earlier session ends."
    )
    async def resetPassword(self, info: GatewayInfo, token: str, newPassword: str) -> AuthPayload:
        raw = await info.context.clients.users.reset_password(token, newPassword)
        return AuthPayload.from_json(orjson.loads(raw))

    @strawberry.mutation(description="Change the caller's password; every earlier session ends.")
    async def changePassword(
        self, info: GatewayInfo, currentPassword: str, newPassword: str
    ) -> AuthPayload:
        ctx = info.context
        raw = await ctx.clients.users.change_password(
            ctx.credentials(), currentPassword, newPassword
        )
        return AuthPayload.from_json(orjson.loads(raw))
