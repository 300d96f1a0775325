"""Topics the gateway reads (every replica on its own, from the end, no commits): to drop cache
entries other services have made stale, and to feed this replica's GraphQL subscriptions. It
publishes nothing of its own; the producer only carries dead letters.

In: `notification.created` (NotificationCreated, also pushed to `notificationAdded`),
`notification.read` (NotificationRead, from the API or the tracking pixel),
`user.preferences-updated` (UserPreferencesUpdated) and `user.purchase-history-updated`
(UserPurchaseHistoryUpdated: the user service changed the order status or history) drop what
is cached for the user (graphql_gateway/cache.py); `order.status-changed` (OrderStatusChanged)
is pushed to `orderUpdates`; `user.sessions-revoked` (SessionsRevoked) marks the sessions ended
in Redis, so their access tokens are refused (graphql_gateway/cache.py).

Handlers never raise: the cache degrades on its own and the hub never waits, so nothing here
can block the reader or need a dead letter.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import Any

from aiokafka.errors import KafkaError

from graphql_gateway.cache import GatewayCache
from graphql_gateway.settings import GatewaySettings
from graphql_gateway.subscriptions import Channel, SubscriptionHub
from shared.bus import EventConsumer, Handler, Received, batched
from shared.events import (
    Envelope,
    NotificationCreated,
    NotificationRead,
    OrderStatusChanged,
    SessionsRevoked,
    UserPreferencesUpdated,
    UserPurchaseHistoryUpdated,
)
from shared.logging import get_logger
from shared.publisher import EventPublisher

log = get_logger(__name__)


# The most events of one partition's fetch handled in one call: their users' cache entries go
# in one DEL instead of one round trip to Redis each (under load every order brings two).
FORGET_BATCH = 500


def broadcast_handlers(cache: GatewayCache, hub: SubscriptionHub) -> dict[str, Handler]:
    """The handler of each topic the gateway reads."""

    async def forget_users_of(received: Sequence[Received]) -> None:
        await cache.forget_users({event.user_id for _, event in received})

    async def on_notifications_created(received: Sequence[Received]) -> None:
        await forget_users_of(received)
        for _, event in received:
            assert isinstance(event, NotificationCreated)
            hub.publish(Channel.NOTIFICATIONS, event.user_id, event)

    async def on_order_status_changed(_: Envelope, event: Any) -> None:
        assert isinstance(event, OrderStatusChanged)
        hub.publish(Channel.ORDER_UPDATES, event.user_id, event)

    async def on_sessions_revoked(_: Envelope, event: Any) -> None:
        assert isinstance(event, SessionsRevoked)
        await cache.revoke_sessions(event.user_id, event.session_ids, event.expires_at.timestamp())
        # The user's roles may have changed with it: cached answers are keyed by roles anyway.
        await cache.forget_user(event.user_id)

    forget = batched(forget_users_of, max_records=FORGET_BATCH)
    return {
        SessionsRevoked.topic: on_sessions_revoked,
        NotificationCreated.topic: batched(on_notifications_created, max_records=FORGET_BATCH),
        NotificationRead.topic: forget,
        UserPreferencesUpdated.topic: forget,
        UserPurchaseHistoryUpdated.topic: forget,
        OrderStatusChanged.topic: on_order_status_changed,
    }


class CacheEvents:
    """The broadcast reader, started in the background: the gateway answers queries while the
    broker is still coming up (readiness says not ready until it runs)."""

    def __init__(
        self, settings: GatewaySettings, cache: GatewayCache, hub: SubscriptionHub
    ) -> None:
        self._settings = settings
        self.publisher = EventPublisher(settings)
        self.consumer = EventConsumer(
            settings, self.publisher, broadcast_handlers(cache, hub), group_id=None
        )
        self._publisher_started = False
        self._consumer_started = False
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Begin connecting in the background."""
        self._task = asyncio.create_task(self._connect(), name="gateway-broadcast-events")

    async def _connect(self) -> None:
        while True:
            try:
                if not self._publisher_started:
                    await self.publisher.start()
                    self._publisher_started = True
                await self.consumer.start()
                self._consumer_started = True
                log.info("broadcast reader running")
                return
            except (KafkaError, OSError) as exc:
                log.warning("broker not reachable yet; retrying", error=str(exc))
                await asyncio.sleep(self._settings.events_reconnect_seconds)

    def ready(self) -> bool:
        """Whether the consumer is running."""
        return self._consumer_started and self.consumer.ready()

    def assigned(self) -> bool:
        """Whether the consumer reads its partitions (tests wait on it)."""
        return self._consumer_started and self.consumer.assigned()

    async def stop(self) -> None:
        """Stop connecting or consuming, then the producer."""
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        # Also closes a consumer whose start was interrupted half way.
        with contextlib.suppress(KafkaError, OSError):
            await self.consumer.stop()
        await self.publisher.stop()
