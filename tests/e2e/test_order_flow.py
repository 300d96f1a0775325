"""The order flow end to end, through GraphQL (HTTP and WebSocket) only: a customer places an
order and is notified; an admin ships it and the customer hears of it on a subscription and in a
notification; the cancel rules; two customers never see each other's orders; the customer's
details show the order in the purchase history, once."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
import websockets
from websockets.asyncio.client import ClientConnection
from websockets.typing import Subprotocol

from tests.e2e.test_welcome_flow import (
    PASSWORD,
    data_of,
    error_code,
    graphql,
    register,
    unique_email,
    verify_by_mail,
)
from tests.fixtures.fleet import RunningFleet
from tests.fixtures.parts import eventually

pytestmark = pytest.mark.e2e

FLOW_TIMEOUT_SECONDS = 30.0
# How long one attempt waits for its subscription message before trying again.
ATTEMPT_SECONDS = 5.0
PROTOCOL = Subprotocol("graphql-transport-ws")

LOGIN = """
mutation Login($email: String!, $password: String!) { login(email: $email, password: $password) {
  token user { id } } }
"""
PLACE = """
mutation Place($products: [ProductInput!]!) {
  placeOrder(products: $products) { id userId status products { productId title } }
}
"""
UPDATE = """
mutation Update($id: ID!, $status: OrderStatus!) {
  updateOrderStatus(orderId: $id, order_status: $status) { id userId status }
}
"""
ORDERS = "query { orders { id userId status } }"
DETAILS = """
query { getUserDetails { id order_status orders { productId }
  purchase_history { orderId products { productId } } } }
"""
NOTIFICATIONS = """
query { getUserNotifications(unreadOnly: false) { id userId type content read } }
"""
ORDER_UPDATES = "subscription { orderUpdates { id userId status products { productId } } }"
NOTIFICATION_ADDED = "subscription { notificationAdded { id userId type content read } }"
# Real ids of the shipped catalog (an order of an unknown id is BAD_USER_INPUT).
TEA = {"productId": "7"}
CUP = {"productId": "8", "quantity": 2}


@pytest.fixture
async def client(fleet: RunningFleet) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=10) as http:
        yield http


async def customer(client: httpx.AsyncClient, fleet: RunningFleet) -> tuple[str, str]:
    """A new customer's id and token."""
    registered = data_of(await register(client, fleet, unique_email()))["registerUser"]
    return registered["user"]["id"], registered["token"]


async def admin_token(client: httpx.AsyncClient, fleet: RunningFleet, admin_email: str) -> str:
    """A token of the fleet's admin (registered and verified through the welcome email's link
    by the first test that needs it: an ADMIN_EMAILS address is admin only once verified)."""
    body = await register(client, fleet, admin_email)
    if not (body.get("errors") and error_code(body) == "CONFLICT"):
        await verify_by_mail(client, fleet, admin_email)
    body = await graphql(client, fleet, LOGIN, {"email": admin_email, "password": PASSWORD})
    return str(data_of(body)["login"]["token"])


async def place(
    client: httpx.AsyncClient, fleet: RunningFleet, token: str, *products: dict[str, Any]
) -> dict[str, Any]:
    body = await graphql(client, fleet, PLACE, {"products": list(products)}, token)
    order: dict[str, Any] = data_of(body)["placeOrder"]
    return order


async def update(
    client: httpx.AsyncClient, fleet: RunningFleet, token: str, order_id: str, status: str
) -> dict[str, Any]:
    return await graphql(client, fleet, UPDATE, {"id": order_id, "status": status}, token)


async def order_notifications(
    client: httpx.AsyncClient, fleet: RunningFleet, token: str, status: str
) -> list[dict[str, Any]]:
    body = await graphql(client, fleet, NOTIFICATIONS, token=token)
    return [
        n
        for n in data_of(body)["getUserNotifications"]
        if n["type"] == "order_update" and n["content"].endswith(f"is {status}.")
    ]


class Subscriptions:
    """One graphql-transport-ws connection; every message received is kept."""

    def __init__(self, connection: ClientConnection) -> None:
        self.connection = connection
        self.messages: list[dict[str, Any]] = []
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for raw in self.connection:
            self.messages.append(json.loads(raw))

    async def subscribe(self, operation_id: str, query: str) -> None:
        message = {"id": operation_id, "type": "subscribe", "payload": {"query": query}}
        await self.connection.send(json.dumps(message))

    async def close(self) -> None:
        await self.connection.close()
        await self._reader

    def received(self, operation_id: str, field_name: str) -> list[dict[str, Any]]:
        found = []
        for message in self.messages:
            if message.get("id") == operation_id:
                assert message["type"] == "next", message
                assert "errors" not in message["payload"], message
                found.append(message["payload"]["data"][field_name])
        return found


@asynccontextmanager
async def subscriptions(fleet: RunningFleet, token: str) -> AsyncIterator[Subscriptions]:
    url = fleet.graphql.replace("http://", "ws://", 1)
    async with websockets.connect(url, subprotocols=[PROTOCOL]) as connection:
        init = {"type": "connection_init", "payload": {"Authorization": f"Bearer {token}"}}
        await connection.send(json.dumps(init))
        ack = json.loads(await asyncio.wait_for(connection.recv(), FLOW_TIMEOUT_SECONDS))
        assert ack["type"] == "connection_ack", ack
        subs = Subscriptions(connection)
        try:
            yield subs
        finally:
            await subs.close()


async def test_order_flow(client: httpx.AsyncClient, fleet: RunningFleet, admin_email: str) -> None:
    alice_id, alice = await customer(client, fleet)
    bob_id, bob = await customer(client, fleet)
    admin = await admin_token(client, fleet, admin_email)

    async def history_of(token: str) -> dict[str, Any]:
        details: dict[str, Any] = data_of(await graphql(client, fleet, DETAILS, token=token))[
            "getUserDetails"
        ]
        return details

    # Read (and so cached by the gateway) before the order and right after it returns, before
    # the user service has likely applied it: only the invalidations make the history appear.
    assert (await history_of(alice))["purchase_history"] == []

    # Alice orders; she is notified that it is Placed; her details show it once.
    order = await place(client, fleet, alice, TEA, CUP)
    await history_of(alice)
    assert order["userId"] == alice_id
    assert order["status"] == "Placed"
    assert [p["productId"] for p in order["products"]] == ["7", "8"]
    placed = await eventually(
        lambda: order_notifications(client, fleet, alice, "Placed"),
        timeout=FLOW_TIMEOUT_SECONDS,
        what="Alice's Placed notification",
    )
    assert len(placed) == 1
    assert placed[0]["userId"] == alice_id

    async def placed_in_history() -> dict[str, Any] | None:
        details = await history_of(alice)
        return details if details["purchase_history"] else None

    details = await eventually(
        placed_in_history, timeout=FLOW_TIMEOUT_SECONDS, what="the order in Alice's history"
    )
    assert [h["orderId"] for h in details["purchase_history"]] == [order["id"]]
    assert details["order_status"] == "Placed"
    assert [p["productId"] for p in details["orders"]] == ["7", "8"]

    async with subscriptions(fleet, alice) as alice_ws:
        await alice_ws.subscribe("orders", ORDER_UPDATES)
        await alice_ws.subscribe("notes", NOTIFICATION_ADDED)

        # Alice may cancel a new Placed order of hers. Done until the subscription pushes the
        # cancel: a subscription starts listening a moment after `subscribe` is sent.
        cancelled_ids: list[str] = []

        async def cancel_pushed() -> bool:
            extra = await place(client, fleet, alice, TEA)
            cancelled = data_of(await update(client, fleet, alice, extra["id"], "Cancelled"))
            assert cancelled["updateOrderStatus"] == {
                "id": extra["id"],
                "userId": alice_id,
                "status": "Cancelled",
            }
            cancelled_ids.append(extra["id"])
            try:
                await eventually(
                    lambda: any(
                        o["id"] == extra["id"] and o["status"] == "Cancelled"
                        for o in alice_ws.received("orders", "orderUpdates")
                    ),
                    timeout=ATTEMPT_SECONDS,
                    what="the cancel on Alice's subscription",
                )
            except AssertionError:
                return False
            return True

        await eventually(
            cancel_pushed,
            timeout=FLOW_TIMEOUT_SECONDS * 2,
            interval=0,
            what="a cancel pushed to Alice",
        )

        # Alice cannot ship her own order; Bob cannot touch it.
        assert error_code(await update(client, fleet, alice, order["id"], "Shipped")) == (
            "FORBIDDEN"
        )
        assert error_code(await update(client, fleet, bob, order["id"], "Cancelled")) == (
            "NOT_FOUND"
        )

        # The admin ships it: Alice hears it on her subscription and in a notification.
        shipped = data_of(await update(client, fleet, admin, order["id"], "Shipped"))
        assert shipped["updateOrderStatus"] == {
            "id": order["id"],
            "userId": alice_id,
            "status": "Shipped",
        }
        pushed = await eventually(
            lambda: [
                o for o in alice_ws.received("orders", "orderUpdates") if o["id"] == order["id"]
            ],
            timeout=FLOW_TIMEOUT_SECONDS,
            what="the Shipped order on Alice's subscription",
        )
        assert pushed == [
            {
                "id": order["id"],
                "userId": alice_id,
                "status": "Shipped",
                "products": [{"productId": "7"}, {"productId": "8"}],
            }
        ]
        shipped_notes = await eventually(
            lambda: order_notifications(client, fleet, alice, "Shipped"),
            timeout=FLOW_TIMEOUT_SECONDS,
            what="Alice's Shipped notification",
        )
        assert len(shipped_notes) == 1
        await eventually(
            lambda: any(
                n["id"] == shipped_notes[0]["id"]
                for n in alice_ws.received("notes", "notificationAdded")
            ),
            timeout=FLOW_TIMEOUT_SECONDS,
            what="the Shipped notification on Alice's subscription",
        )
        # Only Alice's own events ever reach her subscriptions.
        assert {o["userId"] for o in alice_ws.received("orders", "orderUpdates")} == {alice_id}
        assert {n["userId"] for n in alice_ws.received("notes", "notificationAdded")} == {alice_id}

    # Shipped is too late for a customer to cancel (the order service answers FORBIDDEN: the
    # transition exists, only not for a customer).
    too_late = await update(client, fleet, alice, order["id"], "Cancelled")
    assert error_code(too_late) == "FORBIDDEN"

    # Bob's orders never hold Alice's, and the other way round.
    bobs_order = await place(client, fleet, bob, CUP)
    bobs = data_of(await graphql(client, fleet, ORDERS, token=bob))["orders"]
    assert [(o["id"], o["userId"]) for o in bobs] == [(bobs_order["id"], bob_id)]
    alices = data_of(await graphql(client, fleet, ORDERS, token=alice))["orders"]
    assert {o["userId"] for o in alices} == {alice_id}
    assert [o["id"] for o in alices] == [*reversed(cancelled_ids), order["id"]]
    assert {o["id"]: o["status"] for o in alices}[order["id"]] == "Shipped"

    # Alice's details: every order once in the history, the status of her newest order.
    async def history_settled() -> dict[str, Any] | None:
        details = await history_of(alice)
        ids = [h["orderId"] for h in details["purchase_history"]]
        settled = sorted(ids) == sorted([order["id"], *cancelled_ids])
        return details if settled and details["order_status"] == "Cancelled" else None

    final = await eventually(
        history_settled, timeout=FLOW_TIMEOUT_SECONDS, what="Alice's history to settle"
    )
    history_ids = [h["orderId"] for h in final["purchase_history"]]
    assert history_ids.count(order["id"]) == 1
    assert bobs_order["id"] not in history_ids


CATALOG_PAGE = """
query Page($after: String) {
  products(category: "kitchen", first: 3, after: $after) {
    items { productId title price } endCursor hasNextPage
  }
}
"""
PLACE_KEYED = """
mutation Place($products: [ProductInput!]!, $key: String) {
  placeOrder(products: $products, idempotencyKey: $key) {
    id total products { productId title price quantity }
  }
}
"""


async def test_a_client_finds_real_ids_then_orders_them_once(
    client: httpx.AsyncClient, fleet: RunningFleet
) -> None:
    # The catalog needs no token.
    first = data_of(await graphql(client, fleet, CATALOG_PAGE, {"after": None}))["products"]
    assert len(first["items"]) == 3 and first["hasNextPage"] is True
    second = data_of(await graphql(client, fleet, CATALOG_PAGE, {"after": first["endCursor"]}))
    picked = second["products"]["items"][0]
    one = data_of(
        await graphql(
            client,
            fleet,
            "query One($id: ID!) { product(productId: $id) { title price } }",
            {"id": picked["productId"]},
        )
    )["product"]
    assert one == {"title": picked["title"], "price": picked["price"]}

    _, token = await customer(client, fleet)
    variables = {"products": [{"productId": picked["productId"], "quantity": 3}], "key": "k-1"}
    order = data_of(await graphql(client, fleet, PLACE_KEYED, variables, token))["placeOrder"]
    assert order["products"] == [{**picked, "quantity": 3}]
    assert order["total"] == round(3 * picked["price"], 2)
    # A retry with the same key (a lost answer, a double click) is the same order.
    again = data_of(await graphql(client, fleet, PLACE_KEYED, variables, token))["placeOrder"]
    assert again["id"] == order["id"]
    orders = data_of(await graphql(client, fleet, ORDERS, token=token))["orders"]
    assert [o["id"] for o in orders] == [order["id"]]

    unknown = await graphql(client, fleet, PLACE, {"products": [{"productId": "p-7"}]}, token)
    assert error_code(unknown) == "BAD_USER_INPUT"
