"""The gateway's order, recommendation and promotion fields and its GraphQL subscriptions,
against real HTTP stand-ins of every service (in memory, counting calls), the real broker and
Redis. The gateway itself runs under uvicorn on a free port so a real WebSocket client
(`websockets`) can speak graphql-transport-ws to it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import websockets
from fastapi import FastAPI, Request
from pydantic import BaseModel
from websockets.asyncio.client import ClientConnection
from websockets.typing import Subprotocol

from graphql_gateway.main import create_app
from graphql_gateway.settings import GatewaySettings
from graphql_gateway.subscriptions import Channel
from shared.auth import ROLE_ADMIN, ROLE_CUSTOMER, issue_token
from shared.catalog import Product, page_of, shipped_products
from shared.errors import BadUserInput, Conflict, Forbidden, NotFound
from shared.events import (
    Event,
    NotificationCreated,
    OrderStatusChanged,
    UserPurchaseHistoryUpdated,
)
from shared.events.models import ProductLine
from shared.http import CallerDep, install_common
from shared.publisher import EventPublisher
from shared.settings import ServiceSettings
from tests.fixtures.apps import served
from tests.fixtures.parts import TEST_JWT_SECRET, eventually, signed_token
from tests.integration.test_gateway import (
    Calls,
    NotificationStore,
    Served,
    UserStore,
    fake_settings,
    notification_service_app,
    unique_email,
    user_service_app,
)

pytestmark = pytest.mark.integration

ISSUER = "fleet"
PROTOCOL = Subprotocol("graphql-transport-ws")
MAX_PRODUCTS = 50
WS_TIMEOUT_SECONDS = 10.0
# Statuses each status may move to, and who may apply them (the order service's rules).
TRANSITIONS = {
    "Placed": {"Shipped", "Cancelled"},
    "Shipped": {"Delivered", "Cancelled"},
    "Delivered": set(),
    "Cancelled": set(),
}


def token_for(user_id: str, *, admin: bool = False) -> str:
    roles = [ROLE_CUSTOMER, ROLE_ADMIN] if admin else [ROLE_CUSTOMER]
    return signed_token(user_id, unique_email(), roles)


def new_user(users: UserStore) -> tuple[str, str]:
    """A user the user stand-in knows, and a customer token for them."""
    user_id = uuid.uuid4().hex
    users.users[user_id] = {
        "id": user_id,
        "name": "Ada",
        "email": unique_email(),
        "preferences": ["order_updates"],
        "order_status": "none",
        "orders": [],
        "purchase_history": [],
    }
    return user_id, token_for(user_id)


# --- the stand-ins ------------------------------------------------------------------------


CATALOG = {p.id: p for p in shipped_products()}


class ProductIn(BaseModel):
    productId: str
    quantity: int = 1


class NewOrder(BaseModel):
    products: list[ProductIn]
    idempotencyKey: str | None = None


class StatusChange(BaseModel):
    status: str


@dataclass
class OrderStore:
    orders: dict[str, dict[str, Any]] = field(default_factory=dict)
    keys: dict[tuple[str, str], str] = field(default_factory=dict)
    calls: Calls = field(default_factory=Calls)


def catalog_json(product: Product) -> dict[str, Any]:
    return {
        **product.as_line(),
        "description": product.description,
        "image": product.image,
        "rating": product.rating.model_dump(),
    }


def order_service_app(store: OrderStore) -> FastAPI:
    app = FastAPI()
    install_common(app, fake_settings("fake_order_service"))

    @app.post("/orders", status_code=201)
    async def place(body: NewOrder, caller: CallerDep, request: Request) -> dict[str, Any]:
        store.calls.record("place", request)
        if not 1 <= len(body.products) <= MAX_PRODUCTS:
            raise BadUserInput("An order needs between 1 and 50 products.")
        key = (caller.user_id, body.idempotencyKey or "")
        if body.idempotencyKey is not None and key in store.keys:
            return store.orders[store.keys[key]]
        lines = []
        for n, p in enumerate(body.products, start=1):
            if p.productId not in CATALOG:
                raise BadUserInput(f'Product {n}: there is no product "{p.productId}".')
            lines.append({**CATALOG[p.productId].as_line(), "quantity": p.quantity})
        now = datetime.now(UTC).isoformat()
        order: dict[str, Any] = {
            "id": uuid.uuid4().hex,
            "userId": caller.user_id,
            "products": lines,
            "total": round(sum(line["price"] * line["quantity"] for line in lines), 2),
            "status": "Placed",
            "createdAt": now,
            "updatedAt": now,
        }
        store.orders[order["id"]] = order
        if body.idempotencyKey is not None:
            store.keys[key] = order["id"]
        return order

    @app.get("/products")
    async def products(
        request: Request,
        category: str | None = None,
        search: str | None = None,
        first: int = 20,
        after: str | None = None,
    ) -> dict[str, Any]:
        store.calls.record("products", request)
        assert "authorization" not in request.headers  # public: no token is forwarded
        page = page_of(
            list(CATALOG.values()), category=category, search=search, first=first, after=after
        )
        return {
            "items": [catalog_json(p) for p in page.items],
            "endCursor": page.end_cursor,
            "hasNextPage": page.has_next_page,
        }

    @app.get("/products/{product_id}")
    async def product(product_id: str, request: Request) -> dict[str, Any]:
        store.calls.record("product", request)
        if product_id not in CATALOG:
            raise NotFound("That product is not in the catalog.")
        return catalog_json(CATALOG[product_id])

    @app.get("/orders")
    async def listing(
        caller: CallerDep, request: Request, limit: int = 20, offset: int = 0
    ) -> list[dict[str, Any]]:
        store.calls.record("list", request)
        mine = [o for o in store.orders.values() if o["userId"] == caller.user_id]
        mine.sort(key=lambda o: o["createdAt"], reverse=True)
        return mine[offset : offset + limit]

    @app.post("/orders/{order_id}/status")
    async def change(
        order_id: str, body: StatusChange, caller: CallerDep, request: Request
    ) -> dict[str, Any]:
        store.calls.record("status", request)
        order = store.orders.get(order_id)
        if order is None or (order["userId"] != caller.user_id and not caller.is_admin):
            raise NotFound("That order does not exist.")
        if body.status not in TRANSITIONS[order["status"]]:
            raise Conflict(f"An order that is {order['status']} cannot become {body.status}.")
        if not caller.is_admin and body.status != "Cancelled":
            raise Forbidden("Only an admin can set that status.")
        order["status"] = body.status
        order["updatedAt"] = datetime.now(UTC).isoformat()
        return order

    return app


@dataclass
class RecommendationStore:
    latest: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    requested: list[str] = field(default_factory=list)
    calls: Calls = field(default_factory=Calls)


def recommendation_service_app(store: RecommendationStore) -> FastAPI:
    app = FastAPI()
    install_common(app, fake_settings("fake_recommendation_service"))

    @app.get("/recommendations")
    async def latest(caller: CallerDep, request: Request) -> list[dict[str, Any]]:
        store.calls.record("latest", request)
        return store.latest.get(caller.user_id, [])

    @app.post("/recommendations/requests", status_code=202)
    async def start(caller: CallerDep, request: Request) -> dict[str, str]:
        store.calls.record("request", request)
        store.requested.append(caller.user_id)
        return {"message": "Your recommendations are being prepared."}

    return app


@dataclass
class SchedulerStore:
    subscribed: dict[str, str] = field(default_factory=dict)
    calls: Calls = field(default_factory=Calls)


def scheduler_service_app(store: SchedulerStore) -> FastAPI:
    app = FastAPI()
    install_common(app, fake_settings("fake_scheduler_service"))

    @app.put("/subscriptions/me")
    async def subscribe(caller: CallerDep, request: Request) -> dict[str, str]:
        store.calls.record("subscribe", request)
        store.subscribed[caller.user_id] = caller.email
        return {"message": "You are subscribed to promotions."}

    @app.delete("/subscriptions/me")
    async def unsubscribe(caller: CallerDep, request: Request) -> dict[str, str]:
        store.calls.record("unsubscribe", request)
        if store.subscribed.pop(caller.user_id, None) is None:
            raise NotFound("You are not subscribed to promotions.")
        return {"message": "You are unsubscribed from promotions."}

    return app


@dataclass
class Services:
    users: UserStore
    notifications: NotificationStore
    orders: OrderStore
    recommendations: RecommendationStore
    scheduler: SchedulerStore
    served: list[Served]


@pytest.fixture(scope="module")
async def services() -> AsyncIterator[Services]:
    stores = (
        UserStore(),
        NotificationStore(),
        OrderStore(),
        RecommendationStore(),
        SchedulerStore(),
    )
    apps = (
        user_service_app(stores[0]),
        notification_service_app(stores[1]),
        order_service_app(stores[2]),
        recommendation_service_app(stores[3]),
        scheduler_service_app(stores[4]),
    )
    served = [await Served(app).start() for app in apps]
    try:
        yield Services(*stores, served=served)
    finally:
        for server in served:
            await server.stop()


# --- the gateway, under uvicorn -----------------------------------------------------------


@dataclass
class LiveGateway:
    app: FastAPI
    url: str
    http: httpx.AsyncClient

    @property
    def ws_url(self) -> str:
        return self.url.replace("http://", "ws://", 1) + "/graphql"

    async def graphql(
        self, query: str, variables: dict[str, Any] | None = None, *, token: str | None = None
    ) -> dict[str, Any]:
        headers = {"authorization": f"Bearer {token}"} if token else {}
        response = await self.http.post(
            "/graphql", json={"query": query, "variables": variables or {}}, headers=headers
        )
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    def subscriptions(self, channel: Channel) -> int:
        return int(self.app.state.gateway.hub.count(channel))


@pytest.fixture(scope="module")
async def gateway(
    services: Services, kafka_broker: str, redis_url: str
) -> AsyncIterator[LiveGateway]:
    user, notification, order, recommendation, scheduler = services.served
    settings = GatewaySettings(
        jwt_secret=TEST_JWT_SECRET,
        kafka_broker=kafka_broker,
        redis_url=redis_url,
        user_service_url=user.url,
        notification_service_url=notification.url,
        order_service_url=order.url,
        recommendation_service_url=recommendation.url,
        scheduler_service_url=scheduler.url,
        cache_ttl_seconds=300,
        subscription_queue_size=8,
    )
    async with serve_gateway(settings) as live:
        yield live


@asynccontextmanager
async def serve_gateway(settings: GatewaySettings) -> AsyncIterator[LiveGateway]:
    """A gateway under uvicorn on a free loopback port, in this event loop."""
    app = create_app(settings)
    async with (
        served(app, lifespan="on") as url,
        httpx.AsyncClient(base_url=url, timeout=10) as http,
    ):
        yield LiveGateway(app, url, http)


@pytest.fixture(scope="module")
async def publisher(kafka_broker: str) -> AsyncIterator[EventPublisher]:
    events = EventPublisher(
        ServiceSettings(
            service_name="test_publisher", jwt_secret=TEST_JWT_SECRET, kafka_broker=kafka_broker
        )
    )
    await events.start()
    try:
        yield events
    finally:
        await events.stop()


PLACE = """
mutation Place($products: [ProductInput!]!) {
  placeOrder(products: $products) {
    id userId status createdAt updatedAt products { productId title category price quantity }
  }
}"""
UPDATE = """
mutation Update($id: ID!, $status: OrderStatus!) {
  updateOrderStatus(orderId: $id, order_status: $status) { id userId status }
}"""
ORDERS = "query { orders { id userId status products { productId } } }"
DETAILS = "query { getUserDetails { id order_status purchase_history { orderId } } }"
TEA = {"productId": "7"}
CUP = {"productId": "8", "quantity": 2}


def line(product_id: str, quantity: int = 1) -> dict[str, Any]:
    """The order line the catalog makes of a product id."""
    return {**CATALOG[product_id].as_line(), "quantity": quantity}


def codes(body: dict[str, Any]) -> list[str]:
    return [error["extensions"]["code"] for error in body.get("errors", [])]


def data_of(body: dict[str, Any]) -> dict[str, Any]:
    assert not body.get("errors"), body["errors"]
    data: dict[str, Any] = body["data"]
    return data


async def place(gateway: LiveGateway, token: str, *products: dict[str, Any]) -> dict[str, Any]:
    body = await gateway.graphql(PLACE, {"products": list(products or (TEA,))}, token=token)
    order: dict[str, Any] = data_of(body)["placeOrder"]
    return order


# --- orders -------------------------------------------------------------------------------


async def test_place_list_and_update_orders(gateway: LiveGateway, services: Services) -> None:
    user_id, token = new_user(services.users)
    first = await place(gateway, token, TEA, CUP)
    assert first["userId"] == user_id
    assert first["status"] == "Placed"
    assert first["products"] == [line("7"), line("8", 2)]
    assert first["createdAt"].endswith("+00:00")
    second = await place(gateway, token)

    listed = data_of(await gateway.graphql(ORDERS, token=token))["orders"]
    assert [o["id"] for o in listed] == [second["id"], first["id"]]

    cancelled = data_of(
        await gateway.graphql(UPDATE, {"id": first["id"], "status": "Cancelled"}, token=token)
    )["updateOrderStatus"]
    assert cancelled == {"id": first["id"], "userId": user_id, "status": "Cancelled"}

    # Another customer sees none of them.
    _, other_token = new_user(services.users)
    assert data_of(await gateway.graphql(ORDERS, token=other_token))["orders"] == []


async def test_order_errors_pass_through(gateway: LiveGateway, services: Services) -> None:
    _, token = new_user(services.users)
    before = len(services.orders.orders)
    empty = await gateway.graphql(PLACE, {"products": []}, token=token)
    assert codes(empty) == ["BAD_USER_INPUT"]
    assert empty["errors"][0]["message"] == "An order needs between 1 and 50 products."
    assert len(services.orders.orders) == before

    order = await place(gateway, token)
    ship = await gateway.graphql(UPDATE, {"id": order["id"], "status": "Shipped"}, token=token)
    assert codes(ship) == ["FORBIDDEN"]

    _, other_token = new_user(services.users)
    foreign = await gateway.graphql(
        UPDATE, {"id": order["id"], "status": "Cancelled"}, token=other_token
    )
    assert codes(foreign) == ["NOT_FOUND"]

    admin = token_for(uuid.uuid4().hex, admin=True)
    delivered = await gateway.graphql(
        UPDATE, {"id": order["id"], "status": "Delivered"}, token=admin
    )
    assert codes(delivered) == ["CONFLICT"]
    assert services.orders.orders[order["id"]]["status"] == "Placed"


async def test_order_fields_need_a_token(gateway: LiveGateway, services: Services) -> None:
    before = services.orders.calls.total
    for query, variables in ((ORDERS, {}), (PLACE, {"products": [TEA]})):
        assert codes(await gateway.graphql(query, variables)) == ["UNAUTHENTICATED"]
    assert services.orders.calls.total == before


PLACE_KEYED = """
mutation Place($products: [ProductInput!]!, $key: String) {
  placeOrder(products: $products, idempotencyKey: $key) { id total products { quantity } }
}"""
PRODUCTS = """
query Products($category: String, $search: String, $first: Int, $after: String) {
  products(category: $category, search: $search, first: $first, after: $after) {
    items { productId title category price description image rating { rate count } }
    endCursor hasNextPage
  }
}"""
PRODUCT = "query One($id: ID!) { product(productId: $id) { productId title price } }"


async def test_old_clients_order_by_id_and_the_catalog_prices(
    gateway: LiveGateway, services: Services
) -> None:
    _, token = new_user(services.users)
    # A contract-era client sends title, category and price: accepted, not used.
    old = {"productId": "12", "title": "Cheap", "category": "x", "price": 0.01}
    order = await place(gateway, token, old, {"productId": "3", "quantity": 3})
    assert order["products"] == [line("12"), line("3", 3)]
    unknown = await gateway.graphql(PLACE, {"products": [{"productId": "p-7"}]}, token=token)
    assert codes(unknown) == ["BAD_USER_INPUT"] and "p-7" in unknown["errors"][0]["message"]


async def test_an_idempotency_key_reaches_the_order_service(
    gateway: LiveGateway, services: Services
) -> None:
    _, token = new_user(services.users)
    variables = {"products": [CUP], "key": f"key-{uuid.uuid4().hex}"}
    first = data_of(await gateway.graphql(PLACE_KEYED, variables, token=token))["placeOrder"]
    again = data_of(await gateway.graphql(PLACE_KEYED, variables, token=token))["placeOrder"]
    assert again == first
    assert first["total"] == round(2 * CATALOG["8"].price, 2)
    assert first["products"] == [{"quantity": 2}]


async def test_the_catalog_is_public_paged_and_cached(
    gateway: LiveGateway, services: Services
) -> None:
    before = services.orders.calls.total
    body = await gateway.graphql(PRODUCTS, {"first": 2, "category": "books"})
    page = data_of(body)["products"]
    books = [p for p in CATALOG.values() if p.category == "books"]
    assert [p["productId"] for p in page["items"]] == [p.id for p in books[:2]]
    assert page["items"][0]["rating"] == books[0].rating.model_dump()
    assert page["hasNextPage"] is True
    following = data_of(
        await gateway.graphql(
            PRODUCTS, {"first": 2, "category": "books", "after": page["endCursor"]}
        )
    )["products"]
    assert [p["productId"] for p in following["items"]] == [p.id for p in books[2:4]]
    one = data_of(await gateway.graphql(PRODUCT, {"id": "5"}))["product"]
    assert one == {"productId": "5", "title": CATALOG["5"].title, "price": CATALOG["5"].price}
    assert data_of(await gateway.graphql(PRODUCT, {"id": "p-7"}))["product"] is None
    calls = services.orders.calls.total
    for not_a_segment in ("", ".", ".."):  # found by fuzzing: they named another route
        assert data_of(await gateway.graphql(PRODUCT, {"id": not_a_segment}))["product"] is None
    assert services.orders.calls.total == calls
    assert calls == before + 4

    # The same questions again, with or without a token: answered from the cache.
    _, token = new_user(services.users)
    again = await gateway.graphql(PRODUCTS, {"first": 2, "category": "books"}, token=token)
    assert data_of(again)["products"] == page
    assert data_of(await gateway.graphql(PRODUCT, {"id": "5"}))["product"] == one
    assert services.orders.calls.total == calls


# --- the details cache and the order flow -------------------------------------------------


async def test_place_order_drops_the_cached_details(
    gateway: LiveGateway, services: Services
) -> None:
    user_id, token = new_user(services.users)
    me_calls = services.users.calls.hits["me"]
    assert (
        data_of(await gateway.graphql(DETAILS, token=token))["getUserDetails"]["order_status"]
        == "none"
    )
    # Changed downstream, not announced: still the cached answer.
    services.users.users[user_id]["order_status"] = "Placed"
    cached = data_of(await gateway.graphql(DETAILS, token=token))["getUserDetails"]
    assert cached["order_status"] == "none"
    assert services.users.calls.hits["me"] == me_calls + 1

    await place(gateway, token)
    fresh = data_of(await gateway.graphql(DETAILS, token=token))["getUserDetails"]
    assert fresh["order_status"] == "Placed"
    assert services.users.calls.hits["me"] == me_calls + 2


async def test_admin_update_drops_the_owner_details(
    gateway: LiveGateway, services: Services
) -> None:
    user_id, token = new_user(services.users)
    order = await place(gateway, token)
    assert (
        data_of(await gateway.graphql(DETAILS, token=token))["getUserDetails"]["order_status"]
        == "none"
    )
    services.users.users[user_id]["order_status"] = "Shipped"

    admin = token_for(uuid.uuid4().hex, admin=True)
    shipped = data_of(
        await gateway.graphql(UPDATE, {"id": order["id"], "status": "Shipped"}, token=admin)
    )["updateOrderStatus"]
    assert shipped["userId"] == user_id
    fresh = data_of(await gateway.graphql(DETAILS, token=token))["getUserDetails"]
    assert fresh["order_status"] == "Shipped"


async def test_purchase_history_event_drops_the_cached_details(
    gateway: LiveGateway, services: Services, publisher: EventPublisher
) -> None:
    user_id, token = new_user(services.users)
    assert (
        data_of(await gateway.graphql(DETAILS, token=token))["getUserDetails"]["purchase_history"]
        == []
    )
    order_id = uuid.uuid4().hex
    user = services.users.users[user_id]
    user["order_status"] = "Placed"
    user["purchase_history"] = [
        {
            "orderId": order_id,
            "products": [line("7")],
            "purchaseDate": datetime.now(UTC).isoformat(),
        }
    ]
    cached = data_of(await gateway.graphql(DETAILS, token=token))["getUserDetails"]
    assert cached["purchase_history"] == []

    await eventually(gateway.app.state.cache_events.assigned, what="the broadcast reader")

    async def announced_and_fresh() -> bool:
        # A broadcast reader starts at the end: announce again until one is heard.
        await publisher.publish(
            UserPurchaseHistoryUpdated(user_id=user_id, order_id=order_id, order_status="Placed")
        )
        body = await gateway.graphql(DETAILS, token=token)
        details = data_of(body)["getUserDetails"]
        return details["purchase_history"] == [{"orderId": order_id}]

    await eventually(announced_and_fresh, interval=0.3, what="the details to be dropped")


# --- recommendations and promotions -------------------------------------------------------


async def test_recommendations_round_trip(gateway: LiveGateway, services: Services) -> None:
    user_id, token = new_user(services.users)
    assert (
        data_of(await gateway.graphql("query { recommendations { productId } }", token=token))[
            "recommendations"
        ]
        == []
    )
    started = data_of(await gateway.graphql("query { productRecommendation }", token=token))
    assert started["productRecommendation"] == "Your recommendations are being prepared."
    assert services.recommendations.requested[-1] == user_id

    services.recommendations.latest[user_id] = [
        {"productId": "3", "title": "Lamp", "category": "home", "price": 20.0}
    ]
    listed = data_of(
        await gateway.graphql(
            "query { recommendations { productId title category price } }", token=token
        )
    )["recommendations"]
    assert listed == [{"productId": "3", "title": "Lamp", "category": "home", "price": 20.0}]


async def test_promotion_subscription_round_trip(gateway: LiveGateway, services: Services) -> None:
    user_id, token = new_user(services.users)
    subscribed = data_of(await gateway.graphql("mutation { taskSchedular }", token=token))
    assert subscribed["taskSchedular"] == "You are subscribed to promotions."
    assert user_id in services.scheduler.subscribed
    cancelled = data_of(await gateway.graphql("mutation { cancelTaskSchedular }", token=token))
    assert cancelled["cancelTaskSchedular"] == "You are unsubscribed from promotions."
    assert user_id not in services.scheduler.subscribed
    again = await gateway.graphql("mutation { cancelTaskSchedular }", token=token)
    assert codes(again) == ["NOT_FOUND"]
    assert codes(await gateway.graphql("mutation { taskSchedular }")) == ["UNAUTHENTICATED"]


# --- subscriptions over a real WebSocket --------------------------------------------------


class WsClient:
    """A graphql-transport-ws client: every message received is kept in `messages`."""

    def __init__(self, connection: ClientConnection) -> None:
        self.connection = connection
        self.messages: list[dict[str, Any]] = []
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        # The server may end the connection with an error code (an expired token).
        with contextlib.suppress(websockets.ConnectionClosed):
            async for raw in self.connection:
                self.messages.append(json.loads(raw))

    async def send(self, message: dict[str, Any]) -> None:
        await self.connection.send(json.dumps(message))

    async def subscribe(self, operation_id: str, query: str) -> None:
        await self.send({"id": operation_id, "type": "subscribe", "payload": {"query": query}})

    def payloads(self, operation_id: str, field_name: str) -> list[dict[str, Any]]:
        """The data of every `next` message of one operation."""
        found = []
        for message in self.messages:
            if message.get("id") == operation_id and message["type"] == "next":
                assert "errors" not in message["payload"], message
                found.append(message["payload"]["data"][field_name])
        return found

    async def close(self) -> None:
        await self.connection.close()
        await self._reader


@asynccontextmanager
async def ws_client(gateway: LiveGateway, payload: dict[str, Any]) -> AsyncIterator[WsClient]:
    """Connected, initialised with the payload and acknowledged."""
    async with websockets.connect(gateway.ws_url, subprotocols=[PROTOCOL]) as connection:
        await connection.send(json.dumps({"type": "connection_init", "payload": payload}))
        ack = json.loads(await asyncio.wait_for(connection.recv(), WS_TIMEOUT_SECONDS))
        assert ack["type"] == "connection_ack", ack
        client = WsClient(connection)
        try:
            yield client
        finally:
            await client.close()


async def refusal_of(gateway: LiveGateway, payload: dict[str, Any]) -> tuple[int, str]:
    """The close code and reason the gateway answers a connection_init with."""
    async with websockets.connect(gateway.ws_url, subprotocols=[PROTOCOL]) as connection:
        await connection.send(json.dumps({"type": "connection_init", "payload": payload}))
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await asyncio.wait_for(connection.recv(), WS_TIMEOUT_SECONDS)
    received = closed.value.rcvd
    assert received is not None
    return received.code, received.reason


ORDER_UPDATES = "subscription { orderUpdates { id userId status createdAt updatedAt products { productId title } } }"  # noqa: E501
NOTIFICATION_ADDED = "subscription { notificationAdded { id userId type content sentAt read } }"


def status_changed(user_id: str, order_id: str) -> OrderStatusChanged:
    return OrderStatusChanged(
        order_id=order_id,
        user_id=user_id,
        previous_status="Placed",
        status="Shipped",
        products=[ProductLine(productId="7", title="Tea", category="food", price=3.5)],
        created_at=datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC),
        changed_at=datetime.now(UTC),
    )


def notification_created(user_id: str, notification_id: str) -> NotificationCreated:
    return NotificationCreated(
        notification_id=notification_id,
        user_id=user_id,
        type="order_update",
        content=f"Your order {notification_id} is Shipped.",
        sent_at=datetime.now(UTC),
    )


@pytest.mark.parametrize(
    ("channel", "query", "field_name", "make_event"),
    [
        (Channel.ORDER_UPDATES, ORDER_UPDATES, "orderUpdates", status_changed),
        (Channel.NOTIFICATIONS, NOTIFICATION_ADDED, "notificationAdded", notification_created),
    ],
    ids=["orderUpdates", "notificationAdded"],
)
async def test_subscribers_get_only_their_own_events(
    gateway: LiveGateway,
    publisher: EventPublisher,
    channel: Channel,
    query: str,
    field_name: str,
    make_event: Callable[[str, str], Event],
) -> None:
    alice, bob = uuid.uuid4().hex, uuid.uuid4().hex
    await eventually(gateway.app.state.cache_events.assigned, what="the broadcast reader")
    before = gateway.subscriptions(channel)
    async with (
        ws_client(gateway, {"Authorization": f"Bearer {token_for(alice)}"}) as alice_ws,
        ws_client(gateway, {"token": token_for(bob)}) as bob_ws,
    ):
        await alice_ws.subscribe("a", query)
        await bob_ws.subscribe("b", query)
        await eventually(
            lambda: gateway.subscriptions(channel) == before + 2, what="both subscriptions"
        )

        async def both_heard() -> bool:
            # The broadcast reader starts at the end: announce until each has heard one.
            for user_id, client, op in ((alice, alice_ws, "a"), (bob, bob_ws, "b")):
                if not client.payloads(op, field_name):
                    await publisher.publish(make_event(user_id, f"{user_id}-warm"))
            await asyncio.sleep(0.2)
            return bool(alice_ws.payloads("a", field_name) and bob_ws.payloads("b", field_name))

        await eventually(both_heard, what="each subscriber's first event")

        # Bob's event is delivered (to Bob) before Alice's is even published: had it gone to
        # Alice too, it would arrive there before hers.
        await publisher.publish(make_event(bob, "bob-last"))
        await eventually(
            lambda: [p["id"] for p in bob_ws.payloads("b", field_name)][-1] == "bob-last",
            what="Bob's last event",
        )
        await publisher.publish(make_event(alice, "alice-last"))
        await eventually(
            lambda: [p["id"] for p in alice_ws.payloads("a", field_name)][-1] == "alice-last",
            what="Alice's last event",
        )

        alice_got = alice_ws.payloads("a", field_name)
        bob_got = bob_ws.payloads("b", field_name)
        assert {p["userId"] for p in alice_got} == {alice}
        assert {p["userId"] for p in bob_got} == {bob}
        assert {p["id"] for p in alice_got} <= {f"{alice}-warm", "alice-last"}
        last = alice_got[-1]
        if channel is Channel.ORDER_UPDATES:
            assert last["status"] == "Shipped"
            assert last["createdAt"] == "2025-01-02T03:04:05+00:00"
            assert last["products"] == [{"productId": "7", "title": "Tea"}]
        else:
            assert last["type"] == "order_update"
            assert last["read"] is False
            assert last["content"] == "Your order alice-last is Shipped."

    # The subscriptions end with their connections.
    await eventually(lambda: gateway.subscriptions(channel) == before, what="unsubscribed")


@pytest.mark.parametrize(
    "payload",
    [{}, {"token": "not-a-token"}, {"Authorization": "Bearer " + "x" * 40}, {"token": 42}],
    ids=["none", "garbage", "forged", "not-a-string"],
)
async def test_a_connection_without_a_valid_token_is_refused(
    gateway: LiveGateway, payload: dict[str, Any]
) -> None:
    code, reason = await refusal_of(gateway, payload)
    assert code == 4403
    assert reason.startswith("UNAUTHENTICATED: ")


async def test_a_forged_token_is_refused(gateway: LiveGateway) -> None:
    forged = issue_token(
        user_id="someone",
        email=unique_email(),
        roles=[ROLE_CUSTOMER],
        secret="another-secret-" + "x" * 32,
        issuer=ISSUER,
        ttl_seconds=600,
    )
    code, reason = await refusal_of(gateway, {"Authorization": f"Bearer {forged}"})
    assert (code, reason) == (4403, "UNAUTHENTICATED: The token is not valid.")


async def test_a_connection_is_closed_when_its_token_expires(gateway: LiveGateway) -> None:
    user_id = uuid.uuid4().hex
    short_lived = issue_token(
        user_id=user_id,
        email=unique_email(),
        roles=[ROLE_CUSTOMER],
        secret=TEST_JWT_SECRET,
        issuer=ISSUER,
        ttl_seconds=2,
    )
    before = gateway.subscriptions(Channel.NOTIFICATIONS)
    async with ws_client(gateway, {"Authorization": f"Bearer {short_lived}"}) as client:
        await client.subscribe("n", NOTIFICATION_ADDED)
        await eventually(
            lambda: gateway.subscriptions(Channel.NOTIFICATIONS) == before + 1,
            what="the subscription to be registered",
        )
        # No timing asserted: the connection ends by itself, whenever the token runs out.
        await asyncio.wait_for(client.connection.wait_closed(), WS_TIMEOUT_SECONDS)
        connection = client.connection
        assert (connection.close_code, connection.close_reason) == (
            4403,
            "UNAUTHENTICATED: The token has expired; log in again.",
        )
    await eventually(
        lambda: gateway.subscriptions(Channel.NOTIFICATIONS) == before,
        what="the subscription to be dropped",
    )


async def test_subscribing_before_connection_init_is_refused(gateway: LiveGateway) -> None:
    before = gateway.subscriptions(Channel.ORDER_UPDATES)
    async with websockets.connect(gateway.ws_url, subprotocols=[PROTOCOL]) as connection:
        await connection.send(
            json.dumps({"id": "1", "type": "subscribe", "payload": {"query": ORDER_UPDATES}})
        )
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await asyncio.wait_for(connection.recv(), WS_TIMEOUT_SECONDS)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 4401
    assert gateway.subscriptions(Channel.ORDER_UPDATES) == before


async def test_a_subscription_over_http_is_bad_user_input(gateway: LiveGateway) -> None:
    body = await gateway.graphql(ORDER_UPDATES, token=token_for(uuid.uuid4().hex))
    assert body["data"] is None
    assert codes(body) == ["BAD_USER_INPUT"]
    assert body["errors"][0]["message"] == (
        "Subscriptions are served over WebSocket at /graphql (graphql-transport-ws)."
    )
    assert gateway.subscriptions(Channel.ORDER_UPDATES) == 0


async def test_purchase_history_is_paged_and_cached(
    gateway: LiveGateway, services: Services
) -> None:
    user_id, token = new_user(services.users)
    now = datetime.now(UTC).isoformat()
    services.users.users[user_id]["purchase_history"] = [
        {"orderId": f"o{n}", "products": [line("7")], "purchaseDate": now} for n in range(3)
    ]
    query = (
        "query { getUserDetails { purchase_history(first: 2) { orderId products { quantity } } } }"
    )
    before = services.users.calls.hits["purchases"]
    details = data_of(await gateway.graphql(query, token=token))["getUserDetails"]
    assert details["purchase_history"] == [
        {"orderId": "o0", "products": [{"quantity": 1}]},
        {"orderId": "o1", "products": [{"quantity": 1}]},
    ]
    all_three = "query { getUserDetails { purchase_history { orderId } } }"
    assert (
        len(
            data_of(await gateway.graphql(all_three, token=token))["getUserDetails"][
                "purchase_history"
            ]
        )
        == 3
    )
    assert data_of(await gateway.graphql(query, token=token))["getUserDetails"] == details
    assert services.users.calls.hits["purchases"] == before + 2  # the repeat is cached


async def test_a_new_accounts_history_is_read_with_its_new_token(gateway: LiveGateway) -> None:
    registered = await gateway.graphql(
        'mutation R($email: String!) { registerUser(name: "Ann", email: $email,'
        ' password: "long enough pw") { token user { id purchase_history { orderId } } } }',
        {"email": unique_email()},
    )
    assert data_of(registered)["registerUser"]["user"]["purchase_history"] == []
