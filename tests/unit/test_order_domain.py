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
from shared.errors import AppError, BadUserInput, Conflict, Forbidden, NotFound
from shared.events.models import OrderStatus
from tests.fixtures.parts import TEST_JWT_SECRET

LIMITS = ProductLimits(
    max_products=50,
    id_max_length=64,
    title_max_length=200,
    category_max_length=100,
    price_max=1_000_000.0,
)
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
    fields: dict[str, object] = {"productId": "p1", "title": "Lamp", "category": "home"}
    fields.update(overrides)
    return ProductInput(**fields)  # type: ignore[arg-type]


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


def test_products_are_trimmed_and_kept_in_order() -> None:
    lines = domain.clean_products(
        [product(productId=" p1 ", title="  Lamp ", category=" home", price=12.5), product()],
        LIMITS,
    )
    assert [line.model_dump() for line in lines] == [
        {"productId": "p1", "title": "Lamp", "category": "home", "price": 12.5},
        {"productId": "p1", "title": "Lamp", "category": "home", "price": None},
    ]


def test_fifty_products_and_a_free_one_are_fine() -> None:
    assert len(domain.clean_products([product(price=0)] * 50, LIMITS)) == 50


@pytest.mark.parametrize(
    ("products", "message"),
    [
        pytest.param([], "at least one product", id="none"),
        pytest.param([product()] * 51, "at most 50 products", id="51"),
        pytest.param([product(productId="  ")], "productId must not be empty", id="blank-id"),
        pytest.param([product(title="")], "title must not be empty", id="empty-title"),
        pytest.param([product(category=" ")], "category must not be empty", id="blank-category"),
        pytest.param([product(productId="x" * 65)], "at most 64", id="long-id"),
        pytest.param([product(), product(title="x" * 201)], "Product 2: title", id="long-title"),
        pytest.param([product(category="x" * 101)], "at most 100", id="long-category"),
        pytest.param([product(price=-0.01)], "at least 0", id="negative-price"),
        pytest.param([product(price=float("nan"))], "at least 0", id="nan-price"),
        pytest.param([product(price=float("inf"))], "at least 0", id="infinite-price"),
        pytest.param([product(price=1_000_000.01)], "at most", id="huge-price"),
    ],
)
def test_bad_products_are_bad_input(products: list[ProductInput], message: str) -> None:
    with pytest.raises(BadUserInput, match=message):
        domain.clean_products(products, LIMITS)


def test_new_orders_are_placed_and_ids_sort_by_creation() -> None:
    first, second = domain.new_order_id(), domain.new_order_id()
    assert re.fullmatch(r"[0-9a-f]{24}", first)
    assert first < second
    created = domain.now()
    assert created.tzinfo is not None and created.microsecond % 1000 == 0
    order = domain.new_order_document(
        order_id=first,
        user_id="u1",
        products=domain.clean_products([product(price=3)], LIMITS),
        created_at=created,
    )
    assert order == {
        "_id": first,
        "user_id": "u1",
        "products": [{"productId": "p1", "title": "Lamp", "category": "home", "price": 3.0}],
        "status": "Placed",
        "created_at": created,
        "updated_at": created,
    }


def test_events_carry_the_order_and_are_keyed_by_user() -> None:
    created = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    changed = datetime(2026, 1, 3, tzinfo=UTC)
    order = domain.new_order_document(
        order_id="o1",
        user_id="u1",
        products=domain.clean_products([product()], LIMITS),
        created_at=created.replace(tzinfo=None),  # as a naive store would return it
    )
    placed = events.order_placed(order)
    assert (placed.key, placed.topic, placed.placed_at) == ("u1", "order.placed", created)
    changed_event = events.order_status_changed(order, status="Shipped", changed_at=changed)
    assert changed_event.key == "u1"
    assert changed_event.model_dump(mode="json") == {
        "order_id": "o1",
        "user_id": "u1",
        "previous_status": "Placed",
        "status": "Shipped",
        "products": [{"productId": "p1", "title": "Lamp", "category": "home", "price": None}],
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
