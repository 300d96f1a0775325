"""The order service against the real broker: place, list and move orders.

Bad input and refused changes must answer their code, store nothing and publish nothing.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import pytest_asyncio

from order_service import events
from order_service.domain import ProductInput
from order_service.main import create_app
from order_service.repository import OrderRepository
from order_service.service import Orders
from order_service.settings import OrderSettings
from shared.auth import Caller
from shared.catalog import CatalogClient, shipped_products
from shared.events import Envelope, OrderPlaced, OrderStatusChanged
from shared.outbox import outbox_entry
from shared.runtime import ServiceRuntime
from tests.fixtures.apps import running_service, service_settings
from tests.fixtures.parts import envelope_or_none, eventually, read_all, signed_token

pytestmark = pytest.mark.integration

BARRIER_TIMEOUT_SECONDS = 10


@dataclass
class Shopper:
    user_id: str
    headers: dict[str, str]


def shopper(*, admin: bool = False) -> Shopper:
    user_id = uuid.uuid4().hex
    roles = ["customer", "admin"] if admin else ["customer"]
    token = signed_token(user_id, f"user-{user_id}@example.com", roles)
    return Shopper(user_id, {"Authorization": f"Bearer {token}"})


CATALOG = {p.id: p for p in shipped_products()}


def products(count: int = 1, **overrides: Any) -> list[dict[str, Any]]:
    """`count` lines of distinct real catalog products (ids 1, 2, ...)."""
    return [{"productId": str(n + 1), **overrides} for n in range(count)]


def catalog_line(product_id: str, quantity: int = 1) -> dict[str, Any]:
    """The line an order stores for a catalog product."""
    product = CATALOG[product_id]
    return {
        "productId": product_id,
        "title": product.title,
        "category": product.category,
        "price": product.price,
        "quantity": quantity,
    }


def counting_catalog(calls: list[str], *, fail: bool = False) -> CatalogClient:
    """A catalog client over HTTP that serves the shipped catalog (or fails), counting calls."""
    body = [p.model_dump() for p in shipped_products()]

    def answer(request: httpx.Request) -> httpx.Response:
        calls.append(str(request.url))
        if fail:
            raise httpx.ConnectError("catalog down", request=request)
        return httpx.Response(200, json=body)

    return CatalogClient("http://catalog.test", attempts=1, transport=httpx.MockTransport(answer))


def caller_of(who: Shopper) -> Caller:
    return Caller(user_id=who.user_id, email=f"{who.user_id}@example.com", roles=("customer",))


@dataclass
class OrderServiceUnderTest:
    client: httpx.AsyncClient
    repository: OrderRepository
    broker: str
    runtime: ServiceRuntime

    orders: Orders

    async def place(
        self, who: Shopper, lines: list[dict[str, Any]] | None = None, key: str | None = None
    ) -> httpx.Response:
        body: dict[str, Any] = {"products": lines or products()}
        if key is not None:
            body["idempotencyKey"] = key
        return await self.client.post("/orders", json=body, headers=who.headers)

    async def set_status(self, who: Shopper, order_id: str, status: str) -> httpx.Response:
        return await self.client.post(
            f"/orders/{order_id}/status", json={"status": status}, headers=who.headers
        )

    async def events_of(self, topic: str, user_id: str) -> list[tuple[str | None, Envelope]]:
        """(key, envelope) of the records on the topic about that user."""
        records = await read_all(self.broker, topic)
        pairs = [(r.key.decode() if r.key else None, envelope_or_none(r.value)) for r in records]
        return [(key, e) for key, e in pairs if e is not None and e.data.get("user_id") == user_id]


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def service(kafka_broker: str) -> AsyncIterator[OrderServiceUnderTest]:
    settings = service_settings(OrderSettings, kafka_broker)
    async with running_service(create_app, settings) as running:
        app, client = running.app, running.client
        yield OrderServiceUnderTest(
            client,
            app.state.service.repository,
            kafka_broker,
            app.state.runtime,
            app.state.service,
        )


async def test_ready(service: OrderServiceUnderTest) -> None:
    response = await service.client.get("/ready")
    assert response.status_code == 200, response.text
    assert response.json()["ready"] is True


async def test_place_stores_the_order_and_publishes_order_placed(
    service: OrderServiceUnderTest,
) -> None:
    ada = shopper()
    response = await service.place(
        ada,
        [
            # An older client's title, category and price are not what is stored.
            {"productId": " 3 ", "title": "Free lamp", "category": "gifts", "price": 0.01},
            {"productId": "12", "quantity": 3},
        ],
    )

    assert response.status_code == 201, response.text
    order = response.json()
    lines = [catalog_line("3"), catalog_line("12", 3)]
    assert order == {
        "id": order["id"],
        "userId": ada.user_id,
        "products": lines,
        "total": round(CATALOG["3"].price + 3 * CATALOG["12"].price, 2),
        "status": "Placed",
        "createdAt": order["createdAt"],
        "updatedAt": order["createdAt"],
    }
    assert order["createdAt"].endswith("Z")
    stored = await service.repository.orders.find_one({"_id": order["id"]})
    assert stored is not None and stored["user_id"] == ada.user_id
    assert stored["outbox"] == []  # published straight away

    [(key, envelope)] = await eventually(
        lambda: service.events_of(OrderPlaced.topic, ada.user_id), what="order.placed"
    )
    assert key == ada.user_id
    assert (envelope.type, envelope.source) == ("OrderPlaced", "order_service")
    event = OrderPlaced.model_validate(envelope.data)
    assert event.order_id == order["id"]
    assert [p.model_dump() for p in event.products] == order["products"]
    assert event.placed_at.isoformat().replace("+00:00", "Z") == order["createdAt"]


@pytest.mark.parametrize(
    ("body", "with_token", "status", "code"),
    [
        pytest.param({"products": []}, True, 422, "BAD_USER_INPUT", id="no-products"),
        pytest.param({"products": products(51)}, True, 422, "BAD_USER_INPUT", id="51-products"),
        pytest.param(
            {"products": [{"productId": "p-7", "title": "Trail shoes", "category": "sport"}]},
            True,
            422,
            "BAD_USER_INPUT",
            id="unknown-id",
        ),
        pytest.param({"products": products(quantity=0)}, True, 422, "BAD_USER_INPUT", id="qty-0"),
        pytest.param(
            {"products": products(quantity=100)}, True, 422, "BAD_USER_INPUT", id="qty-100"
        ),
        pytest.param(
            {"products": products(), "idempotencyKey": ""}, True, 422, "BAD_USER_INPUT", id="key"
        ),
        pytest.param({"products": [{"title": "t"}]}, True, 422, "BAD_USER_INPUT", id="no-id"),
        pytest.param({"products": "lamp"}, True, 422, "BAD_USER_INPUT", id="not-a-list"),
        pytest.param({}, True, 422, "BAD_USER_INPUT", id="no-body-fields"),
        pytest.param({"products": products()}, False, 401, "UNAUTHENTICATED", id="no-token"),
    ],
)
async def test_bad_orders_store_and_publish_nothing(
    service: OrderServiceUnderTest, body: dict[str, Any], with_token: bool, status: int, code: str
) -> None:
    who = shopper()
    response = await service.client.post(
        "/orders", json=body, headers=who.headers if with_token else {}
    )
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code
    assert error["message"]
    assert await service.repository.count({"user_id": who.user_id}) == 0
    # A good order of the same user afterwards is published; the bad one never was.
    assert (await service.place(who)).status_code == 201
    await eventually(lambda: service.events_of(OrderPlaced.topic, who.user_id), what="good order")
    assert len(await service.events_of(OrderPlaced.topic, who.user_id)) == 1


@pytest.mark.parametrize("content", [b"not json", b"[]", b"null", b'{"products": [1]}'])
async def test_a_body_that_is_not_an_order_is_bad_input(
    service: OrderServiceUnderTest, content: bytes
) -> None:
    who = shopper()
    response = await service.client.post(
        "/orders", content=content, headers={**who.headers, "content-type": "application/json"}
    )
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "BAD_USER_INPUT"
    if content == b"not json":
        assert error["message"] == "The request body is not valid JSON."
    assert await service.repository.count({"user_id": who.user_id}) == 0


async def test_list_is_own_orders_newest_first_and_paged(service: OrderServiceUnderTest) -> None:
    ada, bob = shopper(), shopper()
    placed = []
    for n in range(3):
        response = await service.place(ada, products(1, quantity=n + 1))
        assert response.status_code == 201
        placed.append(response.json()["id"])
    assert (await service.place(bob)).status_code == 201

    listed = await service.client.get("/orders", headers=ada.headers)
    assert listed.status_code == 200, listed.text
    assert [o["id"] for o in listed.json()] == placed[::-1]
    assert {o["userId"] for o in listed.json()} == {ada.user_id}

    page = await service.client.get("/orders?limit=1&offset=1", headers=ada.headers)
    assert [o["id"] for o in page.json()] == [placed[1]]
    for query in ("limit=0", "offset=-1", f"offset={2**64}", "limit=lots"):
        bad = await service.client.get(f"/orders?{query}", headers=ada.headers)
        assert bad.status_code == 422 and bad.json()["error"]["code"] == "BAD_USER_INPUT", query
    anonymous = await service.client.get("/orders")
    assert anonymous.status_code == 401


async def test_customer_may_cancel_their_own_placed_order(service: OrderServiceUnderTest) -> None:
    ada = shopper()
    order = (await service.place(ada)).json()

    response = await service.set_status(ada, order["id"], "Cancelled")

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "Cancelled"
    assert body["updatedAt"] >= body["createdAt"]
    [(key, envelope)] = await eventually(
        lambda: service.events_of(OrderStatusChanged.topic, ada.user_id), what="status change"
    )
    assert key == ada.user_id
    event = OrderStatusChanged.model_validate(envelope.data)
    assert (event.order_id, event.previous_status, event.status) == (
        order["id"],
        "Placed",
        "Cancelled",
    )
    assert [p.model_dump() for p in event.products] == order["products"]


async def test_refused_changes_change_and_publish_nothing(service: OrderServiceUnderTest) -> None:
    ada, eve = shopper(), shopper()
    order = (await service.place(ada)).json()

    ship = await service.set_status(ada, order["id"], "Shipped")
    assert ship.status_code == 403 and ship.json()["error"]["code"] == "FORBIDDEN"
    other = await service.set_status(eve, order["id"], "Cancelled")
    assert other.status_code == 404 and other.json()["error"]["code"] == "NOT_FOUND"
    missing = await service.set_status(ada, uuid.uuid4().hex, "Cancelled")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "NOT_FOUND"
    unknown = await service.set_status(ada, order["id"], "Lost")
    assert unknown.status_code == 422 and unknown.json()["error"]["code"] == "BAD_USER_INPUT"
    no_token = await service.client.post(
        f"/orders/{order['id']}/status", json={"status": "Cancelled"}
    )
    assert no_token.status_code == 401

    stored = await service.repository.by_id(order["id"])
    assert stored is not None and stored["status"] == "Placed"
    # Eve's own view never shows Ada's order.
    assert (await service.client.get("/orders", headers=eve.headers)).json() == []
    assert await service.events_of(OrderStatusChanged.topic, ada.user_id) == []


async def test_admin_ships_and_delivers_then_cancel_conflicts(
    service: OrderServiceUnderTest,
) -> None:
    ada, admin = shopper(), shopper(admin=True)
    order = (await service.place(ada)).json()

    shipped = await service.set_status(admin, order["id"], "Shipped")
    assert shipped.status_code == 200, shipped.text
    assert shipped.json()["status"] == "Shipped"
    late_cancel = await service.set_status(ada, order["id"], "Cancelled")
    assert late_cancel.status_code == 403, late_cancel.text
    delivered = await service.set_status(admin, order["id"], "Delivered")
    assert delivered.status_code == 200, delivered.text
    assert delivered.json()["status"] == "Delivered"
    conflict = await service.set_status(admin, order["id"], "Cancelled")
    assert conflict.status_code == 409 and conflict.json()["error"]["code"] == "CONFLICT"

    listed = (await service.client.get("/orders", headers=ada.headers)).json()
    assert [(o["id"], o["status"]) for o in listed] == [(order["id"], "Delivered")]

    async def both() -> list[tuple[str, str]]:
        found = await service.events_of(OrderStatusChanged.topic, ada.user_id)
        pairs = [(e.data["previous_status"], e.data["status"]) for _, e in found]
        return pairs if len(pairs) >= 2 else []

    assert sorted(await eventually(both, what="two status changes")) == [
        ("Placed", "Shipped"),
        ("Shipped", "Delivered"),
    ]


async def test_concurrent_changes_cannot_both_win(
    service: OrderServiceUnderTest, monkeypatch: pytest.MonkeyPatch
) -> None:
    ada, admin = shopper(), shopper(admin=True)
    order = (await service.place(ada)).json()
    # The in-process store answers without yielding, so the two requests would otherwise run
    # one after the other (and Placed -> Shipped -> Cancelled is valid for an admin). The
    # barrier makes both read the order before either writes, as concurrent requests can.
    both_read = asyncio.Barrier(2)
    read = service.repository.by_id

    async def read_then_wait(order_id: str) -> dict[str, Any] | None:
        found = await read(order_id)
        async with asyncio.timeout(BARRIER_TIMEOUT_SECONDS):
            await both_read.wait()
        return found

    monkeypatch.setattr(service.repository, "by_id", read_then_wait)

    responses = await asyncio.gather(
        service.set_status(admin, order["id"], "Shipped"),
        service.set_status(admin, order["id"], "Cancelled"),
    )
    monkeypatch.undo()

    codes = sorted(r.status_code for r in responses)
    assert codes == [200, 409], [r.text for r in responses]
    [winner] = [r.json() for r in responses if r.status_code == 200]
    [loser] = [r.json() for r in responses if r.status_code == 409]
    # Both read Placed; the conditional write is what refused the second.
    assert loser["error"] == {
        "code": "CONFLICT",
        "message": "The order changed at the same time; reload it and try again.",
    }
    stored = await service.repository.by_id(order["id"])
    assert stored is not None and stored["status"] == winner["status"]
    found = await eventually(
        lambda: service.events_of(OrderStatusChanged.topic, ada.user_id), what="the winner's event"
    )
    assert [e.data["status"] for _, e in found] == [winner["status"]]


async def test_the_status_write_is_conditional_on_the_expected_status(
    service: OrderServiceUnderTest,
) -> None:
    ada = shopper()
    order = (await service.place(ada)).json()
    stale = await service.repository.change_status(
        order["id"],
        expected="Shipped",
        status="Delivered",
        changed_at=datetime.now(UTC),
        outbox_entry={"id": "never", "topic": "order.status-changed", "key": "", "envelope": ""},
    )
    assert stale is None
    stored = await service.repository.orders.find_one({"_id": order["id"]})
    assert stored is not None and (stored["status"], stored["outbox"]) == ("Placed", [])


async def test_a_status_change_publishes_an_earlier_pending_event_before_its_own(
    service: OrderServiceUnderTest,
) -> None:
    ada, admin = shopper(), shopper(admin=True)
    order = (await service.place(ada)).json()
    # A change stored with its event whose publish did not happen (the broker was away): the
    # event is still pending in the order's outbox.
    stored = await service.repository.by_id(order["id"])
    assert stored is not None
    shipped_at = datetime.now(UTC)
    shipped = events.order_status_changed(stored, status="Shipped", changed_at=shipped_at)
    pending = await service.repository.change_status(
        order["id"],
        expected="Placed",
        status="Shipped",
        changed_at=shipped_at,
        outbox_entry=outbox_entry(service.runtime.publisher, shipped),
    )
    assert pending is not None and len(pending["outbox"]) == 1

    response = await service.set_status(admin, order["id"], "Delivered")

    assert response.status_code == 200, response.text
    found = await eventually(
        lambda: service.events_of(OrderStatusChanged.topic, ada.user_id),
        what="both status changes",
    )
    # Published at once, in the order they were stored: the older change is not overtaken.
    assert [e.data["status"] for _, e in found] == ["Shipped", "Delivered"]
    after = await service.repository.orders.find_one({"_id": order["id"]})
    assert after is not None and after["outbox"] == []


async def test_an_unknown_product_is_bad_input_naming_it(service: OrderServiceUnderTest) -> None:
    ada = shopper()
    response = await service.place(ada, [{"productId": "1"}, {"productId": "p-7"}])
    assert response.status_code == 422, response.text
    assert response.json()["error"] == {
        "code": "BAD_USER_INPUT",
        "message": 'Product 2: there is no product "p-7" in the catalog.',
    }
    assert await service.repository.count({"user_id": ada.user_id}) == 0


async def test_a_catalog_outage_is_service_unavailable_and_stores_nothing(
    service: OrderServiceUnderTest, monkeypatch: pytest.MonkeyPatch
) -> None:
    ada, calls = shopper(), []
    monkeypatch.setattr(service.orders, "catalog", counting_catalog(calls, fail=True))
    response = await service.place(ada)
    assert response.status_code == 503, response.text
    assert response.json()["error"]["code"] == "SERVICE_UNAVAILABLE"
    assert calls and await service.repository.count({"user_id": ada.user_id}) == 0
    browse = await service.client.get("/products")
    assert browse.status_code == 503 and browse.json()["error"]["code"] == "SERVICE_UNAVAILABLE"


async def test_catalog_lookups_are_cached(
    service: OrderServiceUnderTest, monkeypatch: pytest.MonkeyPatch
) -> None:
    ada, calls = shopper(), []
    monkeypatch.setattr(service.orders, "catalog", counting_catalog(calls))
    for n in range(3):
        assert (await service.place(ada, products(1, quantity=n + 1))).status_code == 201
    assert (await service.client.get("/products/5")).status_code == 200
    assert (await service.client.get("/products?first=2")).status_code == 200
    assert len(calls) == 1


async def test_the_same_key_answers_the_first_order_and_publishes_once(
    service: OrderServiceUnderTest,
) -> None:
    ada, bob = shopper(), shopper()
    first = await service.place(ada, products(1), key="checkout-1")
    assert first.status_code == 201, first.text
    # Same key, other products: still the first order.
    again = await service.place(ada, products(2, quantity=5), key="checkout-1")
    assert again.status_code == 201, again.text
    assert again.json() == first.json()
    # Another key, or the same key of another user, is another order.
    other = await service.place(ada, products(1), key="checkout-2")
    bobs = await service.place(bob, products(1), key="checkout-1")
    assert len({first.json()["id"], other.json()["id"], bobs.json()["id"]}) == 3

    async def two() -> list[tuple[str | None, Envelope]]:
        found = await service.events_of(OrderPlaced.topic, ada.user_id)
        return found if len(found) >= 2 else []

    found = await eventually(two, what="two orders")
    assert sorted(e.data["order_id"] for _, e in found) == sorted(
        [first.json()["id"], other.json()["id"]]
    )
    assert await service.repository.count({"user_id": ada.user_id}) == 2


async def test_a_key_answers_the_order_as_it_is_now(service: OrderServiceUnderTest) -> None:
    ada = shopper()
    order = (await service.place(ada, key="k")).json()
    assert (await service.set_status(ada, order["id"], "Cancelled")).status_code == 200
    again = await service.place(ada, key="k")
    assert again.json()["id"] == order["id"] and again.json()["status"] == "Cancelled"


async def test_two_racing_requests_with_one_key_place_one_order(
    service: OrderServiceUnderTest, monkeypatch: pytest.MonkeyPatch
) -> None:
    ada = shopper()
    # Both find no order under the key before either remembers one: only the unique key
    # document can decide (a check-then-insert would place two).
    both_looked = asyncio.Barrier(2)
    look = service.repository.keyed

    async def look_then_wait(key_id: str, now: datetime) -> dict[str, Any] | None:
        found = await look(key_id, now)
        if found is None:
            async with asyncio.timeout(BARRIER_TIMEOUT_SECONDS):
                await both_looked.wait()
        return found

    monkeypatch.setattr(service.repository, "keyed", look_then_wait)
    responses = await asyncio.gather(
        service.place(ada, products(1), key="race"), service.place(ada, products(2), key="race")
    )
    monkeypatch.undo()

    assert [r.status_code for r in responses] == [201, 201], [r.text for r in responses]
    assert responses[0].json()["id"] == responses[1].json()["id"]
    assert await service.repository.count({"user_id": ada.user_id}) == 1
    await eventually(lambda: service.events_of(OrderPlaced.topic, ada.user_id), what="the order")
    assert len(await service.events_of(OrderPlaced.topic, ada.user_id)) == 1


async def test_a_second_request_finishes_a_first_that_stopped_between_its_writes(
    service: OrderServiceUnderTest, monkeypatch: pytest.MonkeyPatch
) -> None:
    ada = shopper()
    insert = service.repository.insert

    async def crash(order: dict[str, Any], outbox: list[dict[str, Any]]) -> bool:
        raise ConnectionError("the process died after remembering the key")

    monkeypatch.setattr(service.repository, "insert", crash)
    with pytest.raises(ConnectionError):
        await service.orders.place(caller_of(ada), [ProductInput(productId="4")], "stopped")
    monkeypatch.setattr(service.repository, "insert", insert)
    assert await service.repository.count({"user_id": ada.user_id}) == 0

    again = await service.place(ada, products(1), key="stopped")
    assert again.status_code == 201, again.text
    assert [p["productId"] for p in again.json()["products"]] == ["4"]
    await eventually(lambda: service.events_of(OrderPlaced.topic, ada.user_id), what="the order")
    assert await service.repository.count({"user_id": ada.user_id}) == 1


async def test_a_key_past_its_window_places_a_new_order(service: OrderServiceUnderTest) -> None:
    ada = shopper()
    first = (await service.place(ada, key="old")).json()
    # The window passed, and the TTL monitor has not removed the key yet.
    await service.repository.keys.update_many(
        {"user_id": ada.user_id}, {"$set": {"expires_at": datetime(2000, 1, 1, tzinfo=UTC)}}
    )
    second = (await service.place(ada, key="old")).json()
    assert second["id"] != first["id"]
    assert await service.repository.count({"user_id": ada.user_id}) == 2


async def test_keys_expire_by_a_ttl_index(service: OrderServiceUnderTest) -> None:
    indexes = await service.repository.keys.index_information()
    assert indexes["expire_at"]["expireAfterSeconds"] == 0
    assert indexes["expire_at"]["key"] == [("expires_at", 1)]


async def test_the_catalog_is_public_paged_and_filtered(service: OrderServiceUnderTest) -> None:
    page = await service.client.get("/products", params={"first": 3})
    assert page.status_code == 200, page.text
    body = page.json()
    assert [p["productId"] for p in body["items"]] == ["1", "2", "3"]
    assert body["hasNextPage"] is True
    assert set(body["items"][0]) == {
        "productId",
        "title",
        "category",
        "price",
        "description",
        "image",
        "rating",
    }
    following = (
        await service.client.get("/products", params={"first": 3, "after": body["endCursor"]})
    ).json()
    assert [p["productId"] for p in following["items"]] == ["4", "5", "6"]

    books = [p for p in CATALOG.values() if p.category == "books"]
    listed = (await service.client.get("/products", params={"category": "Books"})).json()
    assert [p["productId"] for p in listed["items"]] == [p.id for p in books]
    assert listed["hasNextPage"] is False
    word = CATALOG["2"].title.split()[0].upper()
    found = (await service.client.get("/products", params={"search": word})).json()
    assert "2" in [p["productId"] for p in found["items"]]

    one = await service.client.get("/products/7")
    assert one.status_code == 200 and one.json()["title"] == CATALOG["7"].title
    missing = await service.client.get("/products/p-7")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "NOT_FOUND"
    for query in ("first=0", "after=bm9wZQ", "search=" + "x" * 101):
        bad = await service.client.get(f"/products?{query}")
        assert bad.status_code == 422 and bad.json()["error"]["code"] == "BAD_USER_INPUT", query
