"""The gateway's subscription hub, its broadcast handlers and the WebSocket token rules
(no I/O: fakeredis for the cache, events built in memory)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import fakeredis
import pytest

from graphql_gateway.auth import authorization_from_connection_params
from graphql_gateway.cache import DETAILS_VIEW, GatewayCache, user_key
from graphql_gateway.events import broadcast_handlers
from graphql_gateway.schema.types import Notification, Order, OrderStatus
from graphql_gateway.subscriptions import Channel, SubscriptionHub
from shared.bus import Batched
from shared.events import (
    Envelope,
    NotificationCreated,
    NotificationRead,
    OrderStatusChanged,
    UserPreferencesUpdated,
    UserPurchaseHistoryUpdated,
)
from shared.events.models import ProductLine


def status_changed(user_id: str, order_id: str = "o-1") -> OrderStatusChanged:
    return OrderStatusChanged(
        order_id=order_id,
        user_id=user_id,
        previous_status="Placed",
        status="Shipped",
        products=[ProductLine(productId="7", title="Tea", category="food")],
        created_at=datetime(2025, 1, 2, 5, 4, 5, tzinfo=timezone(timedelta(hours=2))),
        changed_at=datetime(2025, 1, 3, 0, 0, 0),
    )


def created(user_id: str, notification_id: str = "n-1") -> NotificationCreated:
    return NotificationCreated(
        notification_id=notification_id,
        user_id=user_id,
        type="order_update",
        content="Your order o-1 is Shipped.",
        sent_at=datetime(2025, 1, 3, tzinfo=UTC),
    )


# --- the hub ------------------------------------------------------------------------------


async def test_items_reach_only_that_users_subscribers_on_that_channel() -> None:
    hub = SubscriptionHub(max_queued=10)
    with (
        hub.subscribe(Channel.ORDER_UPDATES, "alice") as alice_orders,
        hub.subscribe(Channel.ORDER_UPDATES, "alice") as alice_second_tab,
        hub.subscribe(Channel.NOTIFICATIONS, "alice") as alice_notes,
        hub.subscribe(Channel.ORDER_UPDATES, "bob") as bob_orders,
    ):
        assert hub.publish(Channel.ORDER_UPDATES, "alice", status_changed("alice")) == 2
        assert await alice_orders.next() == status_changed("alice")
        assert await alice_second_tab.next() == status_changed("alice")
        for empty in (alice_notes, bob_orders):
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(empty.next(), timeout=0.01)
        assert hub.count() == 4
        assert hub.count(Channel.NOTIFICATIONS) == 1
    assert hub.count() == 0
    # Nobody listening: nothing kept, nothing raised.
    assert hub.publish(Channel.ORDER_UPDATES, "alice", status_changed("alice")) == 0


async def test_a_slow_subscriber_loses_its_oldest_items_and_never_blocks() -> None:
    hub = SubscriptionHub(max_queued=2)
    with (
        hub.subscribe(Channel.ORDER_UPDATES, "alice") as slow,
        hub.subscribe(Channel.ORDER_UPDATES, "alice") as other,
    ):
        for order_id in ("o-1", "o-2", "o-3", "o-4"):
            hub.publish(Channel.ORDER_UPDATES, "alice", status_changed("alice", order_id))
        assert slow.dropped == 2
        received = [await slow.next(), await slow.next()]
        assert [item.order_id for item in received if isinstance(item, OrderStatusChanged)] == [
            "o-3",
            "o-4",
        ]
        assert other.dropped == 2


async def test_leaving_the_block_unsubscribes_even_on_error() -> None:
    hub = SubscriptionHub(max_queued=2)
    with pytest.raises(RuntimeError), hub.subscribe(Channel.NOTIFICATIONS, "alice"):
        raise RuntimeError("client went away")
    assert hub.count() == 0


# --- events to GraphQL types --------------------------------------------------------------


def test_order_from_a_status_change_is_in_utc() -> None:
    order = Order.from_event(status_changed("alice"))
    assert order.id == "o-1"
    assert order.userId == "alice"
    assert order.status is OrderStatus.Shipped
    assert order.createdAt == datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert order.updatedAt == datetime(2025, 1, 3, tzinfo=UTC)
    assert [(p.productId, p.title, p.price) for p in order.products] == [("7", "Tea", None)]


def test_notification_from_created_is_unread() -> None:
    notification = Notification.from_event(created("alice"))
    assert (notification.id, notification.userId, notification.read) == ("n-1", "alice", False)
    assert notification.content == "Your order o-1 is Shipped."


# --- broadcast handlers -------------------------------------------------------------------


def envelope_of(event: Any) -> Envelope:
    return Envelope(
        id=uuid.uuid4(),
        type=event.event_type,
        source="test",
        correlation_id="c-1",
        data=event.model_dump(mode="json"),
    )


async def handle(cache: GatewayCache, hub: SubscriptionHub, event: Any) -> None:
    handler = broadcast_handlers(cache, hub)[event.topic]
    await handler(envelope_of(event), event)


async def filled_cache(user_id: str) -> tuple[GatewayCache, fakeredis.FakeAsyncRedis]:
    server = fakeredis.FakeAsyncRedis()
    cache = GatewayCache(server, ttl_seconds=60, retry_after_seconds=5)

    async def fetch() -> bytes:
        return b"{}"

    await cache.read_through(user_id, DETAILS_VIEW, fetch)
    await cache.read_through("bob", DETAILS_VIEW, fetch)
    return cache, server


@pytest.mark.parametrize(
    ("event", "forgets"),
    [
        (UserPurchaseHistoryUpdated(user_id="alice", order_id="o-1", order_status="Placed"), True),
        (UserPreferencesUpdated(user_id="alice", preferences=["promotions"]), True),
        (created("alice"), True),
        (NotificationRead(notification_id="n-1", user_id="alice"), True),
        (status_changed("alice"), False),
    ],
    ids=["history", "preferences", "notification-created", "notification-read", "order-status"],
)
async def test_each_event_forgets_the_users_cache_and_only_theirs(
    event: Any, forgets: bool
) -> None:
    cache, server = await filled_cache("alice")
    await handle(cache, SubscriptionHub(max_queued=2), event)
    assert await server.exists(user_key("alice")) == (0 if forgets else 1)
    assert await server.exists(user_key("bob")) == 1


async def test_a_fetch_of_events_drops_its_users_entries_in_one_round_trip() -> None:
    cache, server = await filled_cache("alice")
    await cache.read_through("carol", DETAILS_VIEW, _empty_answer)
    commands: list[tuple[Any, ...]] = []
    execute = server.execute_command

    async def counted(*args: Any, **options: Any) -> Any:
        commands.append(args)
        return await execute(*args, **options)

    server.execute_command = counted  # type: ignore[method-assign]
    events = [
        UserPurchaseHistoryUpdated(user_id=user, order_id=f"o-{n}", order_status="Placed")
        for n, user in enumerate(["alice", "carol", "alice"])
    ]
    handler = broadcast_handlers(cache, SubscriptionHub(max_queued=2))[events[0].topic]
    assert isinstance(handler, Batched)
    await handler.handle([(envelope_of(event), event) for event in events])
    assert [command[0] for command in commands] == ["DEL"]
    assert await server.exists(user_key("alice"), user_key("carol")) == 0
    assert await server.exists(user_key("bob")) == 1


async def _empty_answer() -> bytes:
    return b"{}"


async def test_order_and_notification_events_feed_the_users_subscriptions() -> None:
    cache, _ = await filled_cache("alice")
    hub = SubscriptionHub(max_queued=5)
    with (
        hub.subscribe(Channel.ORDER_UPDATES, "alice") as orders,
        hub.subscribe(Channel.NOTIFICATIONS, "alice") as notes,
        hub.subscribe(Channel.ORDER_UPDATES, "bob") as bobs,
    ):
        await handle(cache, hub, status_changed("alice"))
        await handle(cache, hub, created("alice"))
        assert await orders.next() == status_changed("alice")
        assert await notes.next() == created("alice")
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(bobs.next(), timeout=0.01)


# --- the token of a WebSocket connection --------------------------------------------------


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"Authorization": "Bearer abc"}, "Bearer abc"),
        ({"authorization": "Bearer abc"}, "Bearer abc"),
        ({"token": "abc"}, "abc"),
        ({}, None),
        (None, None),
        ({"token": ""}, None),
        ({"token": 42}, None),
        ({"Authorization": ["Bearer abc"]}, None),
    ],
)
def test_connection_params_token(params: dict[str, Any] | None, expected: str | None) -> None:
    assert authorization_from_connection_params(params) == expected
