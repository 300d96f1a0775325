"""The subscription hub: events the broadcast reader hears, fanned out to the GraphQL
subscriptions of this gateway process, per user and channel.

Each subscription owns a bounded queue. Publishing never waits: when a subscriber's queue is
full (a slow client), its oldest item is dropped with a warning, so one slow WebSocket can never
hold up the Kafka reader or the other subscribers. A subscriber only ever receives items
published for its own user id.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from enum import Enum

from shared.events import NotificationCreated, OrderStatusChanged
from shared.logging import get_logger

log = get_logger(__name__)

HubItem = OrderStatusChanged | NotificationCreated


class Channel(Enum):
    """What a subscription follows."""

    ORDER_UPDATES = "orderUpdates"
    NOTIFICATIONS = "notificationAdded"


class Subscriber:
    """One subscription's queue of items, bounded; the oldest goes first when it is full."""

    def __init__(self, channel: Channel, user_id: str, max_queued: int) -> None:
        self.channel = channel
        self.user_id = user_id
        self.dropped = 0
        self._queue: asyncio.Queue[HubItem] = asyncio.Queue(maxsize=max_queued)

    def offer(self, item: HubItem) -> None:
        """Queue an item without waiting, dropping the oldest one if the queue is full."""
        if self._queue.full():
            self._queue.get_nowait()
            self.dropped += 1
            log.warning(
                "slow subscriber; dropped its oldest item",
                channel=self.channel.value,
                user_id=self.user_id,
                dropped=self.dropped,
            )
        self._queue.put_nowait(item)

    async def next(self) -> HubItem:
        """The next item (waits until there is one)."""
        return await self._queue.get()


class SubscriptionHub:
    """In-process registry of live subscriptions by (channel, user id)."""

    def __init__(self, max_queued: int) -> None:
        self._max_queued = max_queued
        self._subscribers: dict[tuple[Channel, str], set[Subscriber]] = {}

    @contextmanager
    def subscribe(self, channel: Channel, user_id: str) -> Iterator[Subscriber]:
        """A subscriber registered for the block, removed when it ends (client gone)."""
        subscriber = Subscriber(channel, user_id, self._max_queued)
        key = (channel, user_id)
        self._subscribers.setdefault(key, set()).add(subscriber)
        try:
            yield subscriber
        finally:
            subscribers = self._subscribers.get(key)
            if subscribers is not None:
                subscribers.discard(subscriber)
                if not subscribers:
                    del self._subscribers[key]

    def publish(self, channel: Channel, user_id: str, item: HubItem) -> int:
        """Hand an item to every subscriber of that user on that channel; how many got it."""
        subscribers = self._subscribers.get((channel, user_id), set())
        for subscriber in list(subscribers):
            subscriber.offer(item)
        return len(subscribers)

    def count(self, channel: Channel | None = None) -> int:
        """How many subscriptions are live (on a channel, or in all)."""
        return sum(
            len(subscribers)
            for (ch, _), subscribers in self._subscribers.items()
            if channel is None or ch == channel
        )
