"""Mutation fields: thin resolvers that call a client; one that changes what is cached for a
user calls it inside `ctx.cache.changing(user_id)`, which drops that user's entries after it."""

from __future__ import annotations

from typing import Annotated

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

# The description of every new password argument.
LENGTH_RULE = "8 to 128 characters by default; otherwise BAD_USER_INPUT."
AUTH_REQUIRED = "Needs a token."


@strawberry.type(
    description="Writes. All but registerUser, login, refreshSession, verifyEmail, "
    "requestPasswordReset and resetPassword need a token (`Authorization: Bearer <token>`); "
    "without a valid one they answer UNAUTHENTICATED. The limits quoted are the defaults (the "
    "operator's settings). Any field may answer "
    "SERVICE_UNAVAILABLE while a service it needs is down."
)
class Mutation:
    @strawberry.mutation(
        description="Create an account and its first session (public: no token); a welcome "
        "email carries the verification link. Answers the tokens and the new user. A registered "
        "email is CONFLICT; too many attempts RATE_LIMITED."
    )
    async def registerUser(
        self,
        info: GatewayInfo,
        name: Annotated[
            str,
            strawberry.argument(description="1 to 100 characters (surrounding blanks dropped)."),
        ],
        email: Annotated[
            str,
            strawberry.argument(
                description="A valid address (else BAD_USER_INPUT); the login, kept lower-case."
            ),
        ],
        password: Annotated[str, strawberry.argument(description=LENGTH_RULE)],
        preferences: Annotated[
            list[Preference] | None,
            strawberry.argument(
                description="Which emails to receive; left out or null: order_updates only."
            ),
        ] = strawberry.UNSET,
    ) -> AuthPayload:
        # Left out (or null): the user service applies its default.
        chosen = None if not isinstance(preferences, list) else [p.value for p in preferences]
        ctx = info.context
        raw = await ctx.clients.users.register(
            name=name, email=email, password=password, preferences=chosen
        )
        return AuthPayload.from_json(orjson.loads(raw))

    @strawberry.mutation(
        description="Log in (public: no token); answers a new session's tokens and the user. A "
        "wrong email or password is UNAUTHENTICATED; too many attempts RATE_LIMITED."
    )
    async def login(
        self,
        info: GatewayInfo,
        email: Annotated[
            str, strawberry.argument(description="The registered address (any case).")
        ],
        password: Annotated[str, strawberry.argument(description="The account's password.")],
    ) -> AuthPayload:
        ctx = info.context
        raw = await ctx.clients.users.login(email=email, password=password)
        return AuthPayload.from_json(orjson.loads(raw))

    @strawberry.mutation(
        description="Choose what the caller receives by email; answers the user. " + AUTH_REQUIRED
    )
    async def updateUserPreferences(
        self,
        info: GatewayInfo,
        preferences: Annotated[
            list[Preference],
            strawberry.argument(description="The whole new set, replacing the old ([]: none)."),
        ],
    ) -> User:
        ctx = info.context
        credentials = ctx.credentials()
        async with ctx.cache.changing(credentials.caller.user_id):
            raw = await ctx.clients.users.update_preferences(
                credentials, [p.value for p in preferences]
            )
        return User.from_json(orjson.loads(raw))

    @strawberry.mutation(
        description="Order catalog products. With an idempotencyKey, a repeat with the same key "
        "within 24 hours answers the first order and places nothing new. Needs a token; at most "
        "60 a minute by default (RATE_LIMITED)."
    )
    async def placeOrder(
        self,
        info: GatewayInfo,
        products: Annotated[
            list[ProductInput],
            strawberry.argument(
                description="1 to 50 products, each at most once (else BAD_USER_INPUT); "
                "find ids with the products query."
            ),
        ],
        idempotencyKey: Annotated[
            str | None,
            strawberry.argument(
                description="1 to 200 characters of the client's choosing (a UUID per "
                "order); send the same one again when retrying."
            ),
        ] = None,
    ) -> Order:
        ctx = info.context
        credentials = ctx.credentials()
        await ctx.limits.place_order(credentials.caller.user_id)
        # The history changes asynchronously too; the user service's event drops it again.
        async with ctx.cache.changing(credentials.caller.user_id):
            raw = await ctx.clients.orders.place(
                credentials, [p.to_json() for p in products], idempotencyKey
            )
        return Order.from_json(orjson.loads(raw))

    @strawberry.mutation(
        description="Move an order to another status (Placed -> Shipped -> Delivered; Placed or "
        "Shipped -> Cancelled, else CONFLICT). Needs a token: a customer may only cancel their "
        "own Placed order (else FORBIDDEN; another user's is NOT_FOUND); an admin may apply any "
        "valid transition to any order."
    )
    async def updateOrderStatus(
        self,
        info: GatewayInfo,
        orderId: Annotated[
            strawberry.ID, strawberry.argument(description="The order's id (Order.id).")
        ],
        order_status: Annotated[
            OrderStatus, strawberry.argument(description="The status to move it to.")
        ],
    ) -> Order:
        ctx = info.context
        credentials = ctx.credentials()
        async with ctx.cache.changing(credentials.caller.user_id):
            raw = await ctx.clients.orders.update_status(
                credentials, str(orderId), order_status.value
            )
        order = Order.from_json(orjson.loads(raw))
        if order.userId != credentials.caller.user_id:
            # An admin changed someone else's order: the owner's details are stale.
            await ctx.cache.forget_user(str(order.userId))
        return order

    @strawberry.mutation(
        description="Subscribe the caller to promotions (a promotion notification each period, "
        "emailed with the promotions preference); answers a message; twice is still once. "
        + AUTH_REQUIRED
    )
    async def taskSchedular(self, info: GatewayInfo) -> str:
        ctx = info.context
        return message_of(await ctx.clients.scheduler.subscribe(ctx.credentials()))

    @strawberry.mutation(
        description="Unsubscribe the caller from promotions; answers a message (the same when "
        "not subscribed). " + AUTH_REQUIRED
    )
    async def cancelTaskSchedular(self, info: GatewayInfo) -> str:
        ctx = info.context
        return message_of(await ctx.clients.scheduler.unsubscribe(ctx.credentials()))

    @strawberry.mutation(
        description="Mark one of the caller's notifications read; answers it. Needs a token; an "
        "unknown id or another user's is NOT_FOUND."
    )
    async def markNotificationRead(
        self,
        info: GatewayInfo,
        id: Annotated[
            strawberry.ID,
            strawberry.argument(description="The notification's id (Notification.id)."),
        ],
    ) -> Notification:
        ctx = info.context
        credentials = ctx.credentials()
        async with ctx.cache.changing(credentials.caller.user_id):
            raw = await ctx.clients.notifications.mark_read(credentials, str(id))
        return Notification.from_json(orjson.loads(raw))

    # --- sessions, verification and passwords (issue 13) ---

    @strawberry.mutation(
        description="A new token pair for a refresh token (no access token needed). The refresh "
        "token is rotated: use the new one next time; reusing an old one ends the session. An "
        "invalid, expired or reused one is UNAUTHENTICATED."
    )
    async def refreshSession(
        self,
        info: GatewayInfo,
        refreshToken: Annotated[
            str,
            strawberry.argument(
                description="AuthPayload.refreshToken of the latest login, registration or refresh."
            ),
        ],
    ) -> AuthPayload:
        ctx = info.context
        raw = await ctx.clients.users.refresh(refreshToken)
        return AuthPayload.from_json(orjson.loads(raw))

    @strawberry.mutation(
        description="End the session of the caller's token (and its refresh token): both are "
        "refused from now on; answers true. " + AUTH_REQUIRED
    )
    async def logout(self, info: GatewayInfo) -> bool:
        ctx = info.context
        credentials = ctx.credentials()
        answer = orjson.loads(await ctx.clients.users.logout(credentials))
        caller = credentials.caller
        if caller.session_id is not None and caller.expires_at is not None:
            # At once here; `user.sessions-revoked` tells the same to every gateway.
            await ctx.cache.revoke_sessions(caller.user_id, [caller.session_id], caller.expires_at)
        return bool(answer["loggedOut"])

    @strawberry.mutation(
        description="Confirm an email address with the token of the emailed link (no access "
        "token needed); answers the user, now verified. A link that is invalid, expired or "
        "already used is BAD_USER_INPUT."
    )
    async def verifyEmail(
        self,
        info: GatewayInfo,
        token: Annotated[
            str, strawberry.argument(description="The last part of the link, after /verify-email/.")
        ],
    ) -> User:
        ctx = info.context
        user = User.from_json(orjson.loads(await ctx.clients.users.verify_email(token)))
        await ctx.cache.forget_user(str(user.id))
        return user

    @strawberry.mutation(
        description="Email the caller a new verification link (earlier ones stop working); "
        "answers a message, also when already verified. Needs a token; too many mails "
        "RATE_LIMITED (5 an hour by default)."
    )
    async def resendVerification(self, info: GatewayInfo) -> str:
        ctx = info.context
        return message_of(await ctx.clients.users.resend_verification(ctx.credentials()))

    @strawberry.mutation(
        description="Email a password reset link to the address if it has an account (no "
        "access token needed); the answer is the same either way. Too many mails RATE_LIMITED "
        "(5 an hour by default)."
    )
    async def requestPasswordReset(
        self,
        info: GatewayInfo,
        email: Annotated[
            str, strawberry.argument(description="The account's email address (any case).")
        ],
    ) -> str:
        ctx = info.context
        return message_of(await ctx.clients.users.request_password_reset(email))

    @strawberry.mutation(
        description="Set a new password with the token of the emailed reset link (no access "
        "token needed); every earlier session ends and the answer starts a new one. A link "
        "that is invalid, expired or already used is BAD_USER_INPUT."
    )
    async def resetPassword(
        self,
        info: GatewayInfo,
        token: Annotated[
            str,
            strawberry.argument(description="The last part of the link, after /reset-password/."),
        ],
        newPassword: Annotated[str, strawberry.argument(description=LENGTH_RULE)],
    ) -> AuthPayload:
        ctx = info.context
        raw = await ctx.clients.users.reset_password(token, newPassword)
        return AuthPayload.from_json(orjson.loads(raw))

    @strawberry.mutation(
        description="Change the caller's password; every earlier session ends and the answer "
        "starts a new one. Needs a token."
    )
    async def changePassword(
        self,
        info: GatewayInfo,
        currentPassword: Annotated[
            str,
            strawberry.argument(
                description="The password in use now; a wrong one is UNAUTHENTICATED."
            ),
        ],
        newPassword: Annotated[str, strawberry.argument(description=LENGTH_RULE)],
    ) -> AuthPayload:
        ctx = info.context
        raw = await ctx.clients.users.change_password(
            ctx.credentials(), currentPassword, newPassword
        )
        return AuthPayload.from_json(orjson.loads(raw))
