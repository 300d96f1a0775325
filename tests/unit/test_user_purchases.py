"""How order events change a user: once per (order, status), never moving a status back."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from shared.events.models import OrderStatus, ProductLine
from user_service.purchases import (
    OrderFact,
    UserOrderWrite,
    after_update,
    notification_content,
    plan_order_update,
    wants_order_emails,
)

LAMP = ProductLine(productId="sku-1", title="Lamp", category="home", price=2.5)
BULB = ProductLine(productId="sku-2", title="Bulb", category="home")
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def fact(order_id: str, status: OrderStatus, at: datetime = T0, *lines: ProductLine) -> OrderFact:
    return OrderFact(
        order_id=order_id, products=list(lines or (LAMP,)), created_at=at, status=status
    )


def user(**fields: Any) -> dict[str, Any]:
    stored: dict[str, Any] = {
        "_id": "u1",
        "email": "ada@example.com",
        "preferences": [],
        "purchase_history": [],
        "order_status": "none",
        "orders": [],
    }
    return {**stored, **fields}


def test_first_order_is_recorded_and_becomes_the_latest() -> None:
    plan = plan_order_update(user(), fact("o1", "Placed"))
    assert plan is not None
    assert plan.applied_key == "o1:Placed"
    assert plan.history_entry == {
        "order_id": "o1",
        "products": [LAMP.model_dump()],
        "purchase_date": T0,
    }
    assert plan.set_fields == {
        "order_status": "Placed",
        "orders": [LAMP.model_dump()],
        "latest_order": {"order_id": "o1", "created_at": T0},
    }


def test_an_applied_status_is_a_no_op() -> None:
    assert plan_order_update(user(order_events=["o1:Placed"]), fact("o1", "Placed")) is None


def test_a_later_status_of_the_latest_order_sets_only_the_status() -> None:
    stored = user(
        order_events=["o1:Placed"],
        purchase_history=[{"order_id": "o1", "products": [], "purchase_date": T0}],
        latest_order={"order_id": "o1", "created_at": T0},
    )
    plan = plan_order_update(stored, fact("o1", "Shipped"))
    assert plan is not None
    assert (plan.history_entry, plan.set_fields) == (None, {"order_status": "Shipped"})


def test_a_late_earlier_status_does_not_move_the_status_back() -> None:
    stored = user(
        order_events=["o1:Shipped"],
        purchase_history=[{"order_id": "o1", "products": [], "purchase_date": T0}],
        latest_order={"order_id": "o1", "created_at": T0},
    )
    plan = plan_order_update(stored, fact("o1", "Placed"))
    assert plan is not None
    assert (plan.applied_key, plan.history_entry, plan.set_fields) == ("o1:Placed", None, {})


def test_an_older_order_is_recorded_but_not_made_the_latest() -> None:
    stored = user(latest_order={"order_id": "o2", "created_at": T0})
    plan = plan_order_update(stored, fact("o1", "Cancelled", T0 - timedelta(seconds=1)))
    assert plan is not None
    assert plan.history_entry is not None and plan.set_fields == {}


def test_a_newer_order_replaces_the_latest_products() -> None:
    stored = user(latest_order={"order_id": "o1", "created_at": T0})
    plan = plan_order_update(stored, fact("o2", "Placed", T0 + timedelta(seconds=1), BULB))
    assert plan is not None
    assert plan.set_fields["orders"] == [BULB.model_dump()]
    assert plan.set_fields["latest_order"]["order_id"] == "o2"


def test_notification_text_and_email_preference() -> None:
    assert notification_content("0123456789abcdef", "Shipped") == "Your order 89abcdef is Shipped."
    assert wants_order_emails(user(preferences=["order_updates"]))
    assert not wants_order_emails(user(preferences=["promotions"]))


def test_the_status_marks_tell_an_order_is_in_the_history_without_reading_it() -> None:
    # Applying order events reads the user without `purchase_history` (it only grows).
    stored = user(order_events=["o1:Placed"], latest_order={"order_id": "o1", "created_at": T0})
    del stored["purchase_history"]
    plan = plan_order_update(stored, fact("o1", "Shipped"))
    assert plan is not None
    assert (plan.history_entry, plan.set_fields) == (None, {"order_status": "Shipped"})


def test_a_batch_is_planned_on_what_its_earlier_facts_leave() -> None:
    stored = user(latest_order={"order_id": "o0", "created_at": T0 - timedelta(days=1)})
    write = UserOrderWrite()
    view: dict[str, Any] = stored
    facts = [
        fact("o1", "Placed", T0, LAMP),
        fact("o1", "Placed", T0, LAMP),  # the same event twice in one batch
        fact("o1", "Shipped", T0, LAMP),
        fact("o2", "Placed", T0 - timedelta(hours=1), BULB),  # older than o1
    ]
    for each in facts:
        plan = plan_order_update(view, each)
        if plan is not None:
            view = after_update(view, plan)
            write.add(plan)

    assert write.applied_keys == ["o1:Placed", "o1:Shipped", "o2:Placed"]
    assert [e["order_id"] for e in write.history_entries] == ["o1", "o2"]
    assert write.set_fields == {
        "order_status": "Shipped",
        "orders": [LAMP.model_dump()],
        "latest_order": {"order_id": "o1", "created_at": T0},
    }
    assert [e["order_id"] for e in view["purchase_history"]] == ["o1", "o2"]
    assert stored["purchase_history"] == []  # the stored user is left as it was
