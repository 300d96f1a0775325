"""The order rules: product validation, the status machine and who may move an order."""

from __future__ import annotations

import itertools
import re
from datetime import UTC, datetime

import pytest

from order_service import domain, events
from order_service.domain import ProductInput, ProductLimits
from order_service.settings import OrderSettings
from shared.auth import Caller
from shared.catalog import Product
from shared.errors import AppError, BadUserInput, Conflict, Forbidden, NotFound
from shared.events.models import OrderStatus, ProductLine
from tests.fixtures.parts import TEST_JWT_SECRET

LIMITS = ProductLimits(
    max_products=50,
    id_max_length=64,
    max_quantity=99,
    title_max_length=200,
    category_max_length=100,
)
LAMP = Product(id="p1", title="Lamp", category="home", price=12.5)
TEA = Product(id="p2", title="Tea", category="food", price=0.1)
CATALOG = {
    p.id: p
    for p in (
        LAMP,
        TEA,
        *(Product(id=f"x{n}", title="X", category="c", price=1) for n in range(60)),
    )
}
STATUSES: list[OrderStatus] = ["Placed", "Shipped", "Delivered", "Cancelled"]
# Written out by hand, not derived from the code under test.
VALID = {
    ("Placed", "Shipped"),
    ("Shipped", "Delivered"),
    ("Placed", "Cancelled"),
    ("Shipped", "Cancelled"),
}

OWNER = Caller(user_id="owner", email="owner@example.com", roles=("customer",))
OTHER = Caller(user_id="other", email="other@example.com", roles=("customer",))
ADMIN = Caller(user_id="admin", email="boss@example.com", roles=("customer", "admin"))
ADMIN_OWNER = Caller(user_id="owner", email="owner@example.com", roles=("customer", "admin"))


def product(**overrides: object) -> ProductInput:
    fields: dict[str, object] = {"productId": "p1"}
    fields.update(overrides)
    return ProductInput(**fields)  # type: ignore[arg-type]


def price(products: list[ProductInput]) -> list[ProductLine]:
    return domain.price_products(products, CATALOG, LIMITS)


def expected_outcome(who: str, current: str, target: str) -> type[AppError] | None:
    """The table of the issue: None means allowed."""
    if who == "other":
        return NotFound
    if who == "owner":
        if target != "Cancelled":
            return Forbidden
        if current == "Placed":
            return None
        return Forbidden if current == "Shipped" else Conflict
    return None if (current, target) in VALID else Conflict


CALLERS = {"owner": OWNER, "other": OTHER, "admin": ADMIN, "admin-owner": ADMIN_OWNER}


@pytest.mark.parametrize(
    ("who", "current", "target"),
    list(itertools.product(CALLERS, STATUSES, STATUSES)),
    ids=lambda v: str(v),
)
def test_transition_table(who: str, current: OrderStatus, target: OrderStatus) -> None:
    expected = expected_outcome("admin" if who.startswith("admin") else who, current, target)
    check = lambda: domain.check_transition(  # noqa: E731
        caller=CALLERS[who], owner_id="owner", current=current, target=target
    )
    if expected is None:
        check()
    else:
        with pytest.raises(expected) as caught:
            check()
        assert caught.value.message


def test_the_machine_has_exactly_the_four_transitions() -> None:
    pairs = {(a, b) for a, targets in domain.TRANSITIONS.items() for b in targets}
    assert pairs == VALID


def test_conflict_names_both_statuses() -> None:
    with pytest.raises(Conflict, match="Delivered cannot become Cancelled"):
        domain.check_transition(caller=ADMIN, owner_id="x", current="Delivered", target="Cancelled")


def test_the_catalog_prices_the_lines_in_order() -> None:
    lines = price([product(productId=" p2 ", quantity=3), product()])
    assert [line.model_dump() for line in lines] == [
        {"productId": "p2", "title": "Tea", "category": "food", "price": 0.1, "quantity": 3},
        {"productId": "p1", "title": "Lamp", "category": "home", "price": 12.5, "quantity": 1},
    ]
    # 3 x 0.1 + 12.5 in exact cents (floats would say 12.799999999999999).
    assert domain.order_total(lines) == 12.8


def test_catalog_titles_and_categories_are_stored_cut_to_the_limits() -> None:
    long = Product(id="L", title="t" * 300, category="c" * 150, price=1)
    (line,) = domain.price_products([product(productId="L")], {"L": long}, LIMITS)
    assert (len(line.title), len(line.category)) == (200, 100)


def test_fifty_products_of_ninety_nine_are_fine() -> None:
    lines = price([product(productId=f"x{n}", quantity=99) for n in range(50)])
    assert len(lines) == 50 and domain.order_total(lines) == 50 * 99


@pytest.mark.parametrize(
    ("products", "message"),
    [
        pytest.param([], "at least one product", id="none"),
        pytest.param(
            [product(productId=f"x{n}") for n in range(51)], "at most 50 products", id="51"
        ),
        pytest.param([product(productId="  ")], "productId must not be empty", id="blank-id"),
        pytest.param([product(productId="x" * 65)], "at most 64", id="long-id"),
        pytest.param(
            [product(), product(productId="p-7")],
            'Product 2: there is no product "p-7" in the catalog',
            id="unknown-id",
        ),
        pytest.param([product(quantity=0)], "quantity must be from 1 to 99", id="zero"),
        pytest.param([product(quantity=100)], "quantity must be from 1 to 99", id="hundred"),
        pytest.param([product(), product(productId="p1 ")], "listed twice", id="twice"),
    ],
)
def test_bad_products_are_bad_input(products: list[ProductInput], message: str) -> None:
    with pytest.raises(BadUserInput, match=message):
        price(products)


def test_idempotency_keys_are_checked_and_kept_apart_per_user() -> None:
    assert domain.check_idempotency_key(None, 10) is None
    assert domain.check_idempotency_key("k", 10) == "k"
    for bad in ("", "k" * 11):
        with pytest.raises(BadUserInput, match="idempotencyKey"):
            domain.check_idempotency_key(bad, 10)
    assert domain.idempotency_id("u1", "k") != domain.idempotency_id("u2", "k")
    assert domain.idempotency_id("u1", "k") == domain.idempotency_id("u1", "k")
    # The separator cannot be forged by moving characters between user and key.
    assert domain.idempotency_id("u1", "2k") != domain.idempotency_id("u12", "k")


def test_new_orders_are_placed_and_ids_sort_by_creation() -> None:
    first, second = domain.new_order_id(), domain.new_order_id()
    assert re.fullmatch(r"[0-9a-f]{24}", first)
    assert first < second
    created = domain.now()
    assert created.tzinfo is not None and created.microsecond % 1000 == 0
    order = domain.NewOrder(
        id=first, user_id="u1", products=price([product(quantity=2)]), created_at=created
    )
    assert order.document() == {
        "_id": first,
        "user_id": "u1",
        "products": [
            {"productId": "p1", "title": "Lamp", "category": "home", "price": 12.5, "quantity": 2}
        ],
        "total": 25.0,
        "status": "Placed",
        "created_at": created,
        "updated_at": created,
    }


def test_events_carry_the_order_and_are_keyed_by_user() -> None:
    created = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    changed = datetime(2026, 1, 3, tzinfo=UTC)
    order = domain.NewOrder(id="o1", user_id="u1", products=price([product()]), created_at=created)
    placed = events.order_placed(order)
    assert (placed.key, placed.topic, placed.placed_at) == ("u1", "order.placed", created)
    assert placed.products == order.products
    stored = order.document()
    stored["created_at"] = created.replace(tzinfo=None)  # as a naive store would return it
    changed_event = events.order_status_changed(stored, status="Shipped", changed_at=changed)
    assert changed_event.key == "u1"
    assert changed_event.model_dump(mode="json") == {
        "order_id": "o1",
        "user_id": "u1",
        "previous_status": "Placed",
        "status": "Shipped",
        "products": [
            {"productId": "p1", "title": "Lamp", "category": "home", "price": 12.5, "quantity": 1}
        ],
        "created_at": "2026-01-02T03:04:05Z",
        "changed_at": "2026-01-03T00:00:00Z",
    }


def test_settings_defaults_and_page_bounds() -> None:
    settings = OrderSettings(_env_file=None, jwt_secret=TEST_JWT_SECRET)
    assert (settings.port, settings.order_max_products, settings.orders_page_default) == (
        7000,
        50,
        20,
    )
    with pytest.raises(ValueError, match="ORDERS_PAGE_DEFAULT"):
        OrderSettings(
            _env_file=None, jwt_secret=TEST_JWT_SECRET, orders_page_default=5, orders_page_max=4
        )


def test_a_catalog_outage_answers_inside_the_gateways_patience() -> None:
    from graphql_gateway.settings import GatewaySettings

    settings = OrderSettings(_env_file=None, jwt_secret=TEST_JWT_SECRET)
    worst = (
        settings.catalog_retry_attempts * settings.catalog_timeout_seconds
        + (settings.catalog_retry_attempts - 1) * settings.catalog_retry_backoff_max_seconds
    )
    patience = GatewaySettings.model_fields["downstream_timeout_seconds"].default
    assert worst < patience
