"""Topics the gateway reads (every replica on its own, from the end, no commits) to drop cache
entries other services have made stale. It publishes nothing of its own; the producer only
carries dead letters.

In: `notification.created` (NotificationCreated), `notification.read` (NotificationRead, from
the API or the tracking pixel), `user.preferences-updated` (UserPreferencesUpdated).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from aiokafka.errors import KafkaError

from graphql_gateway.cache import GatewayCache
from graphql_gateway.settings import GatewaySettings
from shared.bus import EventConsumer, EventPublisher, Handler
from shared.events import Envelope, NotificationCreated, NotificationRead, UserPreferencesUpdated
from shared.logging import get_logger

log = get_logger(__name__)

# A notification of this type follows a change of the user's order status and history.
_ORDER_UPDATE = "order_update"


def cache_handlers(cache: GatewayCache) -> dict[str, Handler]:
    """The handler of each topic the gateway reads."""

    async def on_notification_created(_: Envelope, event: Any) -> None:
        assert isinstance(event, NotificationCreated)
        await cache.drop_notifications(event.user_id)
        if event.type == _ORDER_UPDATE:
            await cache.drop_user_details(event.user_id)

    async def on_notification_read(_: Envelope, event: Any) -> None:
        assert isinstance(event, NotificationRead)
        await cache.drop_notifications(event.user_id)

    async def on_preferences_updated(_: Envelope, event: Any) -> None:
        assert isinstance(event, UserPreferencesUpdated)
        await cache.drop_user_details(event.user_id)

    return {
        NotificationCreated.topic: on_notification_created,
        NotificationRead.topic: on_notification_read,
        UserPreferencesUpdated.topic: on_preferences_updated,
    }


class CacheEvents:
    """The broadcast reader, started in the background: the gateway answers queries while the
    broker is still coming up (readiness says not ready until it runs)."""

    def __init__(self, settings: GatewaySettings, cache: GatewayCache) -> None:
        self._settings = settings
        self.publisher = EventPublisher(settings)
        self.consumer = EventConsumer(
            settings, self.publisher, cache_handlers(cache), group_id=None
        )
        self._publisher_started = False
        self._consumer_started = False
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Begin connecting in the background."""
        self._task = asyncio.create_task(self._connect(), name="gateway-cache-events")

    async def _connect(self) -> None:
        while True:
            try:
                if not self._publisher_started:
                    await self.publisher.start()
                    self._publisher_started = True
                await self.consumer.start()
                self._consumer_started = True
                log.info("cache invalidation consumer running")
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
