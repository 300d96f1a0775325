"""The user service consuming order events from the real broker.

Each (order, status) is applied once however often it is delivered: the order is one purchase
document (the user document holds only a bounded summary) and one notification is requested
per status. Events of one user share a key,
hence a partition, so a later event on the same topic and key proves the earlier were handled.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import pytest_asyncio

from shared.bus import Batched
from shared.events import (
    Envelope,
    Event,
    NotificationRequested,
    OrderPlaced,
    OrderStatusChanged,
    PurchaseHistoryProvided,
    PurchaseHistoryRequested,
    UserPurchaseHistoryUpdated,
)
from shared.events.models import OrderStatus, ProductLine
from shared.publisher import message_size
from shared.runtime import ServiceRuntime
from shared.times import stored_now
from tests.fixtures.apps import running_service, service_settings
from tests.fixtures.parts import (
    envelope_or_none,
    eventually,
    read_all,
)
from user_service.events import consumer_handlers
from user_service.main import create_app
from user_service.migrate_purchases import migrate
from user_service.repository import UserRepository
from user_service.service import Users
from user_service.settings import UserSettings

pytestmark = pytest.mark.integration

PASSWORD = "correct horse battery"
LAMP = ProductLine(productId="3", title="Desk lamp", category="home", price=19.99, quantity=2)
BULB = ProductLine(productId="4", title="Bulb", category="home")


@dataclass
class UserServiceUnderTest:
    client: httpx.AsyncClient
    repository: UserRepository
    runtime: ServiceRuntime
    broker: str
    settings: UserSettings
    users: Users

    async def register(self, preferences: list[str] | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "name": "Ada Lovelace",
            "email": f"user-{uuid.uuid4().hex}@example.com",
            "password": PASSWORD,
        }
        if preferences is not None:
            body["preferences"] = preferences
        response = await self.client.post("/users", json=body)
        assert response.status_code == 201, response.text
        return dict(response.json()["user"])

    async def send(self, event: Event, *, times: int = 1, key: str | None = None) -> Envelope:
        """Publish one envelope `times` times (a redelivery keeps the envelope)."""
        envelope = self.runtime.publisher.envelope_for(event)
        for _ in range(times):
            await self.runtime.publisher.publish_envelope(event.topic, key or event.key, envelope)
        return envelope

    async def user(self, user_id: str) -> dict[str, Any]:
        found = await self.repository.users.find_one({"_id": user_id})
        assert found is not None
        return dict(found)

    async def purchases(self, user_id: str) -> list[dict[str, Any]]:
        """The user's purchase documents, newest first (with their outboxes)."""
        cursor = self.repository.purchases.find({"user_id": user_id}).sort(
            [("purchase_date", -1), ("_id", -1)]
        )
        return list(await cursor.to_list(None))

    async def history(self, user_id: str) -> list[str]:
        return [p["_id"] for p in await self.purchases(user_id)]

    async def published(self, topic: str, user_id: str) -> list[Envelope]:
        records = await read_all(self.broker, topic)
        envelopes = [e for r in records if (e := envelope_or_none(r.value)) is not None]
        return [e for e in envelopes if e.data.get("user_id") == user_id]

    async def wait_applied(self, user_id: str, order_id: str, status: str) -> None:
        async def applied() -> bool:
            found = await self.repository.purchases.find_one({"_id": order_id})
            return found is not None and status in found["statuses"]

        await eventually(applied, what=f"{status} of {order_id} applied")


def new_order_id() -> str:
    return uuid.uuid4().hex[:24]


def placed(user_id: str, order_id: str, at: datetime, *lines: ProductLine) -> OrderPlaced:
    return OrderPlaced(
        order_id=order_id, user_id=user_id, products=list(lines or (LAMP,)), placed_at=at
    )


def status_changed(
    user_id: str,
    order_id: str,
    created_at: datetime,
    previous: OrderStatus,
    status: OrderStatus,
    *lines: ProductLine,
) -> OrderStatusChanged:
    return OrderStatusChanged(
        order_id=order_id,
        user_id=user_id,
        previous_status=previous,
        status=status,
        products=list(lines or (LAMP,)),
        created_at=created_at,
        changed_at=datetime.now(UTC),
    )


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def service(kafka_broker: str) -> AsyncIterator[UserServiceUnderTest]:
    settings = service_settings(UserSettings, kafka_broker)
    async with running_service(create_app, settings) as running:
        app, client = running.app, running.client
        runtime: ServiceRuntime = app.state.runtime
        [consumer] = runtime.consumers
        await eventually(consumer.assigned, what="the user_service group's partitions")
        yield UserServiceUnderTest(
            client, app.state.service.repository, runtime, kafka_broker, settings, app.state.service
        )


async def test_order_placed_twice_is_recorded_and_notified_once(
    service: UserServiceUnderTest,
) -> None:
    user = await service.register()
    order_id, older_id = new_order_id(), new_order_id()
    at = stored_now()

    await service.send(placed(user["id"], order_id, at, LAMP, BULB), times=2)
    # Same key, same topic, after the duplicates: once it is in, both copies were handled.
    await service.send(placed(user["id"], older_id, at - timedelta(days=1)))
    await service.wait_applied(user["id"], older_id, "Placed")

    stored = await service.user(user["id"])
    assert await service.history(user["id"]) == [order_id, older_id]  # newest first
    assert stored["order_status"] == "Placed"
    # The latest order is the newer one, whatever the arrival order.
    assert stored["orders"] == [LAMP.model_dump(), BULB.model_dump()]
    # The user document holds a bounded summary, never the purchases.
    assert "purchase_history" not in stored and "order_events" not in stored

    login = await service.client.post(
        "/auth/login", json={"email": user["email"], "password": PASSWORD}
    )
    me = await service.client.get(
        "/users/me", headers={"authorization": f"Bearer {login.json()['token']}"}
    )
    history = me.json()["purchase_history"]
    assert [h["orderId"] for h in history] == [order_id, older_id]
    assert history[0]["products"] == [LAMP.model_dump(), BULB.model_dump()]
    assert history[0]["purchaseDate"] == at.isoformat().replace("+00:00", "Z")

    async def notifications() -> list[Envelope]:
        found = await service.published(NotificationRequested.topic, user["id"])
        return found if len(found) >= 2 else []

    found = await eventually(notifications, what="two notification requests")
    requests = [NotificationRequested.model_validate(e.data) for e in found]
    about_order = [r for r in requests if order_id[-8:] in r.content]
    assert len(about_order) == 1
    [request] = about_order
    assert request.type == "order_update"
    assert request.content == f"Your order {order_id[-8:]} is Placed."
    assert (request.email, request.send_email) == (user["email"], True)
    assert request.subject

    updates = await service.published(UserPurchaseHistoryUpdated.topic, user["id"])
    assert sorted((u.data["order_id"], u.data["order_status"]) for u in updates) == sorted(
        [(order_id, "Placed"), (older_id, "Placed")]
    )
    assert (await service.user(user["id"]))["outbox"] == []
    assert [p["outbox"] for p in await service.purchases(user["id"])] == [[], []]


async def test_status_changes_update_the_latest_order_once(service: UserServiceUnderTest) -> None:
    user = await service.register()
    order_id, other_id = new_order_id(), new_order_id()
    at = stored_now()
    await service.send(placed(user["id"], order_id, at))
    await service.wait_applied(user["id"], order_id, "Placed")

    await service.send(status_changed(user["id"], order_id, at, "Placed", "Shipped"), times=2)
    # An older order cancelled afterwards, on the same topic and key: proves both copies done.
    earlier = at - timedelta(hours=1)
    await service.send(status_changed(user["id"], other_id, earlier, "Placed", "Cancelled", BULB))
    await service.wait_applied(user["id"], other_id, "Cancelled")

    stored = await service.user(user["id"])
    assert stored["order_status"] == "Shipped"  # the older order does not change it
    assert stored["orders"] == [LAMP.model_dump()]
    # An order first heard of through a status change is recorded all the same.
    assert await service.history(user["id"]) == [order_id, other_id]

    async def shipped() -> list[NotificationRequested]:
        found = [
            NotificationRequested.model_validate(e.data)
            for e in await service.published(NotificationRequested.topic, user["id"])
        ]
        return found if any("Cancelled" in r.content for r in found) else []

    requests = await eventually(shipped, what="the notification of the cancel")
    contents = sorted(r.content for r in requests)
    assert contents == sorted(
        [
            f"Your order {order_id[-8:]} is Placed.",
            f"Your order {order_id[-8:]} is Shipped.",
            f"Your order {other_id[-8:]} is Cancelled.",
        ]
    )
    assert all(r.send_email and r.email == user["email"] for r in requests)


async def test_no_order_emails_without_the_preference(service: UserServiceUnderTest) -> None:
    user = await service.register(preferences=["promotions"])
    order_id = new_order_id()
    at = stored_now()
    await service.send(placed(user["id"], order_id, at))
    await service.wait_applied(user["id"], order_id, "Placed")
    await service.send(status_changed(user["id"], order_id, at, "Placed", "Cancelled"))
    await service.wait_applied(user["id"], order_id, "Cancelled")

    assert (await service.user(user["id"]))["order_status"] == "Cancelled"

    async def both() -> list[NotificationRequested]:
        found = await service.published(NotificationRequested.topic, user["id"])
        return (
            [NotificationRequested.model_validate(e.data) for e in found] if len(found) >= 2 else []
        )

    requests = await eventually(both, what="two notification requests")
    assert [r.content for r in requests] == [
        f"Your order {order_id[-8:]} is Placed.",
        f"Your order {order_id[-8:]} is Cancelled.",
    ]
    assert all(r.send_email is False and r.email == user["email"] for r in requests)


async def test_a_late_placement_does_not_move_the_status_back(
    service: UserServiceUnderTest,
) -> None:
    user = await service.register()
    order_id = new_order_id()
    at = stored_now()
    await service.send(status_changed(user["id"], order_id, at, "Placed", "Shipped"))
    await service.wait_applied(user["id"], order_id, "Shipped")
    await service.send(placed(user["id"], order_id, at))
    await service.wait_applied(user["id"], order_id, "Placed")

    stored = await service.user(user["id"])
    assert stored["order_status"] == "Shipped"
    assert await service.history(user["id"]) == [order_id]

    async def both() -> list[str]:
        found = await service.published(NotificationRequested.topic, user["id"])
        return [e.data["content"] for e in found] if len(found) >= 2 else []

    # Each status is notified once, in the order the events arrived.
    assert await eventually(both, what="two notification requests") == [
        f"Your order {order_id[-8:]} is Shipped.",
        f"Your order {order_id[-8:]} is Placed.",
    ]


async def test_events_of_unknown_users_are_skipped_not_dead_lettered(
    service: UserServiceUnderTest,
) -> None:
    ghost = uuid.uuid4().hex
    user = await service.register()
    ghost_order, real_order = new_order_id(), new_order_id()
    envelope = await service.send(placed(ghost, ghost_order, stored_now()))
    # A real user's event under the ghost's key lands after it on the same partition.
    await service.send(placed(user["id"], real_order, stored_now()), key=ghost)
    await service.wait_applied(user["id"], real_order, "Placed")

    assert await service.published(NotificationRequested.topic, ghost) == []
    assert await service.repository.count({"_id": ghost}) == 0
    dead = [
        Envelope.from_bytes(r.value) for r in await read_all(service.broker, "order.placed.dlq")
    ]
    assert envelope.id not in {e.id for e in dead}


async def test_a_batch_of_order_events_is_one_summary_write_per_user_in_arrival_order(
    service: UserServiceUnderTest,
) -> None:
    user = await service.register()
    first, older = new_order_id(), new_order_id()
    at = stored_now()
    events: list[Event] = [
        placed(user["id"], first, at),
        status_changed(user["id"], first, at, "Placed", "Shipped"),
        placed(user["id"], older, at - timedelta(days=1), BULB),
    ]
    envelopes = [service.runtime.publisher.envelope_for(event) for event in events]
    received = [(envelopes[0], events[0])] * 2 + list(zip(envelopes[1:], events[1:], strict=True))
    version_before = (await service.user(user["id"])).get("order_version") or 0

    # Straight to the handler: one batch for sure, as the consumer hands over one fetch.
    on_order_events = consumer_handlers(service.users)[OrderPlaced.topic]
    assert isinstance(on_order_events, Batched)
    await on_order_events.handle(received)

    stored = await service.user(user["id"])
    assert stored["order_version"] == version_before + 1  # one summary write for the batch
    purchases = await service.purchases(user["id"])
    assert [(p["_id"], p["statuses"]) for p in purchases] == [
        (first, ["Placed", "Shipped"]),
        (older, ["Placed"]),
    ]
    assert (stored["order_status"], stored["orders"]) == ("Shipped", [LAMP.model_dump()])
    assert [p["outbox"] for p in purchases] == [[], []]  # published at once

    async def requests() -> list[Envelope]:
        found = await service.published(NotificationRequested.topic, user["id"])
        return found if len(found) >= 3 else []

    found = await eventually(requests, what="three notification requests")
    assert [e.data["content"] for e in found] == [
        f"Your order {first[-8:]} is Placed.",
        f"Your order {first[-8:]} is Shipped.",
        f"Your order {older[-8:]} is Placed.",
    ]
    # Each request carries the correlation id of the order event that caused it.
    assert [e.correlation_id for e in found] == [e.correlation_id for e in envelopes]


# --- purchases: paged, windowed, bounded --------------------------------------------------

# The largest order line the order service stores (its defaults: productId, title and category
# at most 64, 200 and 100 characters, 99 of each, at most 50 lines), in 4-byte characters.
WIDE = "\U0001f6d2"
LARGEST_LINE = ProductLine(
    productId=WIDE * 64, title=WIDE * 200, category=WIDE * 100, price=999_999.99, quantity=99
)
LARGEST_ORDER_LINES = 50


async def store_purchases(
    service: UserServiceUnderTest, user_id: str, count: int, lines: list[ProductLine]
) -> list[str]:
    """`count` purchases of the user, a day apart; their ids, newest first."""
    now = stored_now()
    ids = [new_order_id() for _ in range(count)]
    for age, order_id in enumerate(ids):
        await service.repository.purchases.insert_one(
            {
                "_id": order_id,
                "user_id": user_id,
                "products": [line.model_dump() for line in lines],
                "purchase_date": now - timedelta(days=age),
                "statuses": ["Placed"],
            }
        )
    return ids


async def token_of(service: UserServiceUnderTest, user: dict[str, Any]) -> dict[str, str]:
    login = await service.client.post(
        "/auth/login", json={"email": user["email"], "password": PASSWORD}
    )
    return {"authorization": f"Bearer {login.json()['token']}"}


async def provided(service: UserServiceUnderTest, request_id: str) -> list[Any]:
    records = await read_all(service.broker, PurchaseHistoryProvided.topic)
    return [
        r
        for r in records
        if (e := envelope_or_none(r.value)) is not None and e.data.get("request_id") == request_id
    ]


async def test_purchases_are_their_own_documents_indexed_by_user_and_date(
    service: UserServiceUnderTest,
) -> None:
    indexes = await service.repository.purchases.index_information()
    assert indexes["user_newest_first"]["key"] == [
        ("user_id", 1),
        ("purchase_date", -1),
        ("_id", -1),
    ]


async def test_the_history_is_paged_newest_first(service: UserServiceUnderTest) -> None:
    user = await service.register()
    ids = await store_purchases(service, user["id"], 25, [LAMP])
    headers = await token_of(service, user)

    me = (await service.client.get("/users/me", headers=headers)).json()
    assert [p["orderId"] for p in me["purchase_history"]] == ids[:20]  # the default page
    three = await service.client.get("/users/me/purchases?first=3", headers=headers)
    assert [p["orderId"] for p in three.json()] == ids[:3]
    assert three.json()[0]["products"] == [LAMP.model_dump()]
    everything = await service.client.get("/users/me/purchases?first=1000", headers=headers)
    assert [p["orderId"] for p in everything.json()] == ids  # capped at 100, 25 exist
    bad = await service.client.get("/users/me/purchases?first=0", headers=headers)
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "BAD_USER_INPUT"
    assert (await service.client.get("/users/me/purchases")).status_code == 401


async def test_a_recommendation_request_gets_the_window_it_asks_for(
    service: UserServiceUnderTest,
) -> None:
    user = await service.register()
    ids = await store_purchases(service, user["id"], 5, [LAMP, BULB])
    request_id = uuid.uuid4().hex
    await service.send(
        PurchaseHistoryRequested(request_id=request_id, user_id=user["id"], max_orders=2)
    )
    [record] = await eventually(lambda: provided(service, request_id), what="the answer")
    answer = PurchaseHistoryProvided.model_validate(Envelope.from_bytes(record.value).data)
    assert [p.order_id for p in answer.purchases] == ids[:2]
    assert answer.purchases[0].products == [LAMP, BULB]


async def test_the_largest_allowed_history_is_published_within_the_size_limit(
    service: UserServiceUnderTest,
) -> None:
    user = await service.register()
    window = service.settings.purchase_history_window_max
    ids = await store_purchases(service, user["id"], window, [LARGEST_LINE] * LARGEST_ORDER_LINES)
    request_id = uuid.uuid4().hex
    await service.send(
        PurchaseHistoryRequested(request_id=request_id, user_id=user["id"], max_orders=window)
    )

    [record] = await eventually(lambda: provided(service, request_id), what="the answer")
    size = message_size(record.key, record.value, list(record.headers))
    assert size <= service.settings.kafka_max_message_bytes
    answer = PurchaseHistoryProvided.model_validate(Envelope.from_bytes(record.value).data)
    # Cut, oldest first, to what fits: the newest orders, whole, and as many as fit.
    kept = [p.order_id for p in answer.purchases]
    assert kept and kept == ids[: len(kept)] and len(kept) < window
    one_more = answer.model_copy(update={"purchases": [*answer.purchases, answer.purchases[0]]})
    assert not service.runtime.publisher.fits(one_more)


async def test_the_migration_moves_an_embedded_history_without_notifying_again(
    service: UserServiceUnderTest,
) -> None:
    user = await service.register()
    old, older = new_order_id(), new_order_id()
    at = stored_now() - timedelta(days=3)
    # A user as the service stored it before issue 15.
    await service.repository.users.update_one(
        {"_id": user["id"]},
        {
            "$set": {
                "purchase_history": [
                    {"order_id": older, "products": [BULB.model_dump()], "purchase_date": at},
                    {"order_id": old, "products": [LAMP.model_dump()], "purchase_date": at},
                ],
                "order_events": [f"{older}:Placed", f"{old}:Placed", f"{old}:Shipped"],
            }
        },
    )

    moved = await migrate(service.repository)
    assert moved.users >= 1 and moved.purchases >= 2
    stored = await service.user(user["id"])
    assert "purchase_history" not in stored and "order_events" not in stored
    purchases = {p["_id"]: p for p in await service.purchases(user["id"])}
    assert purchases[old]["statuses"] == ["Placed", "Shipped"]
    assert purchases[older]["statuses"] == ["Placed"]
    assert (await migrate(service.repository)).purchases == 0  # idempotent

    # A redelivered status applied before the migration is not notified again; a new one is.
    await service.send(status_changed(user["id"], old, at, "Placed", "Shipped", LAMP))
    await service.send(status_changed(user["id"], old, at, "Shipped", "Delivered", LAMP))
    await service.wait_applied(user["id"], old, "Delivered")
    found = await service.published(NotificationRequested.topic, user["id"])
    assert [e.data["content"] for e in found] == [f"Your order {old[-8:]} is Delivered."]
