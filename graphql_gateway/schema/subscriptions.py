"""Subscription fields (over WebSocket, graphql-transport-ws): the caller's own order status
changes and new notifications, as this gateway's broadcast reader hears them on Kafka.

The caller is the one the connection_init token names (checked when the connection opens, and
again here before anything is registered); a subscription only ever receives items published
for that user id. Over plain HTTP a subscription is BAD_USER_INPUT.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Iterator

import strawberry
from graphql import ExecutionResult, GraphQLError
from strawberry.extensions import SchemaExtension
from strawberry.types.graphql import OperationType

from graphql_gateway.schema.context import GatewayContext
from graphql_gateway.schema.queries import GatewayInfo
from graphql_gateway.schema.types import Notification, Order
from graphql_gateway.subscriptions import Channel, SubscriptionHub
from shared.errors import BadUserInput
from shared.events import NotificationCreated, OrderStatusChanged

OVER_WEBSOCKET_ONLY = "Subscriptions are served over WebSocket at /graphql (graphql-transport-ws)."


class SubscriptionsOverWebSocketOnly(SchemaExtension):
    """A subscription sent over HTTP is answered BAD_USER_INPUT instead of being executed as a
    query (which would answer null for a non-null field)."""

    def on_execute(self) -> Iterator[None]:
        execution = self.execution_context
        context = execution.context
        over_http = getattr(context, "connection_params", None) is None
        if execution.operation_type is OperationType.SUBSCRIPTION and over_http:
            error = BadUserInput(OVER_WEBSOCKET_ONLY)
            execution.result = ExecutionResult(
                data=None, errors=[GraphQLError(error.message, original_error=error)]
            )
        yield


def subscriber_id(ctx: GatewayContext) -> str:
    """The caller of a subscription (the connection's token; Unauthenticated without one)."""
    return ctx.credentials().caller.user_id


async def _order_updates(hub: SubscriptionHub, user_id: str) -> AsyncGenerator[Order, None]:
    with hub.subscribe(Channel.ORDER_UPDATES, user_id) as subscriber:
        while True:
            item = await subscriber.next()
            if isinstance(item, OrderStatusChanged) and item.user_id == user_id:
                yield Order.from_event(item)


async def _notifications(hub: SubscriptionHub, user_id: str) -> AsyncGenerator[Notification, None]:
    with hub.subscribe(Channel.NOTIFICATIONS, user_id) as subscriber:
        while True:
            item = await subscriber.next()
            if isinstance(item, NotificationCreated) and item.user_id == user_id:
                yield Notification.from_event(item)


@strawberry.type(
    description="Live updates over WebSocket at /graphql (graphql-transport-ws), with the token "
    'in the connection_init payload: {"Authorization": "Bearer <token>"}; a missing or invalid '
    "one closes the connection (4403). Over HTTP a subscription is BAD_USER_INPUT."
)
class Subscription:
    @strawberry.subscription(
        description="The caller's orders, each time one changes status (none are replayed: "
        "orders is the record)."
    )
    async def orderUpdates(self, info: GatewayInfo) -> AsyncGenerator[Order, None]:
        ctx = info.context
        return _order_updates(ctx.hub, subscriber_id(ctx))

    @strawberry.subscription(
        description="The caller's notifications, as they are stored (none are replayed: "
        "getUserNotifications is the record)."
    )
    async def notificationAdded(self, info: GatewayInfo) -> AsyncGenerator[Notification, None]:
        ctx = info.context
        return _notifications(ctx.hub, subscriber_id(ctx))
