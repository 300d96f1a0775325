"""How order events change a user: once per (order, status), never moving a status back; the
purchases are separate documents, the user keeps a bounded summary."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from shared.events.models import OrderStatus, ProductLine
from user_service.domain import (
    OrderFact,
    notification_content,
    plan_batch,
    purchase_fields,
    summary_change,
    wants_order_emails,
)

LAMP = ProductLine(productId="1", title="Lamp", category="home", price=2.5, quantity=2)
BULB = ProductLine(productId="2", title="Bulb", category="home")
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
        "order_status": "none",
        "orders": [],
    }
    return {**stored, **fields}


def latest(order_id: str, at: datetime = T0) -> dict[str, Any]:
    return {"order_id": order_id, "created_at": at}


def test_first_order_is_recorded_and_becomes_the_latest() -> None:
    plan = plan_batch(user(), {}, [fact("o1", "Placed")])
    assert plan.summary == {
        "order_status": "Placed",
        "orders": [LAMP.model_dump()],
        "latest_order": latest("o1"),
    }
    [write] = plan.purchases.values()
    assert (write.order_id, write.statuses, write.facts) == ("o1", ["Placed"], [0])
    assert purchase_fields("u1", write) == {
        "user_id": "u1",
        "products": [LAMP.model_dump()],
        "purchase_date": T0,
    }


def test_an_applied_status_is_a_no_op() -> None:
    plan = plan_batch(user(latest_order=latest("o1")), {"o1": ["Placed"]}, [fact("o1", "Placed")])
    assert (plan.summary, plan.purchases, plan.new_facts) == ({}, {}, [])


def test_a_later_status_of_the_latest_order_sets_only_the_status() -> None:
    plan = plan_batch(user(latest_order=latest("o1")), {"o1": ["Placed"]}, [fact("o1", "Shipped")])
    assert plan.summary == {"order_status": "Shipped"}
    assert plan.purchases["o1"].statuses == ["Shipped"]


def test_a_late_earlier_status_does_not_move_the_status_back() -> None:
    plan = plan_batch(
        user(latest_order=latest("o1"), order_status="Shipped"),
        {"o1": ["Shipped"]},
        [fact("o1", "Placed")],
    )
    assert plan.summary == {}
    assert plan.purchases["o1"].statuses == ["Placed"]  # recorded and notified, once


def test_an_older_order_is_recorded_but_not_made_the_latest() -> None:
    plan = plan_batch(
        user(latest_order=latest("o1")), {}, [fact("o0", "Placed", T0 - timedelta(days=1))]
    )
    assert plan.summary == {}
    assert list(plan.purchases) == ["o0"]


def test_a_newer_order_replaces_the_latest_products() -> None:
    plan = plan_batch(
        user(latest_order=latest("o1")), {}, [fact("o2", "Placed", T0 + timedelta(hours=1), BULB)]
    )
    assert plan.summary["orders"] == [BULB.model_dump()]
    assert plan.summary["latest_order"] == latest("o2", T0 + timedelta(hours=1))


def test_a_redelivery_after_the_summary_was_written_plans_the_same_summary() -> None:
    # The summary write landed, the purchase write did not (a crash between them).
    after_summary = user(latest_order=latest("o1"), order_status="Placed", orders=[LAMP])
    plan = plan_batch(after_summary, {}, [fact("o1", "Placed")])
    assert plan.summary == {"order_status": "Placed"}
    assert plan.purchases["o1"].statuses == ["Placed"]


def test_summary_change_is_idempotent() -> None:
    seen = ["Placed", "Shipped"]
    once = summary_change(latest("o1"), fact("o1", "Shipped"), seen)
    assert once == summary_change(latest("o1"), fact("o1", "Shipped"), seen)
    assert summary_change(latest("o1"), fact("o1", "Placed"), seen) == {}


def test_notification_text_and_email_preference() -> None:
    assert notification_content("abcdef0123456789", "Shipped") == "Your order 23456789 is Shipped."
    assert wants_order_emails({"preferences": ["order_updates"]})
    assert not wants_order_emails({"preferences": ["promotions"]})


def test_a_batch_is_planned_on_what_its_earlier_facts_leave() -> None:
    stored = user(latest_order=latest("o0", T0 - timedelta(days=1)))
    facts = [
        fact("o1", "Placed", T0, LAMP),
        fact("o1", "Placed", T0, LAMP),  # the same event twice in one batch
        fact("o2", "Placed", T0 - timedelta(hours=1), BULB),  # older than o1
        fact("o1", "Shipped", T0, LAMP),
    ]
    plan = plan_batch(stored, {}, facts)

    assert plan.new_facts == [0, 2, 3]
    assert [(w.order_id, w.statuses, w.facts) for w in plan.purchases.values()] == [
        ("o1", ["Placed", "Shipped"], [0, 3]),
        ("o2", ["Placed"], [2]),
    ]
    assert plan.summary == {
        "order_status": "Shipped",
        "orders": [LAMP.model_dump()],
        "latest_order": latest("o1"),
    }
    assert "order_status" not in stored or stored["order_status"] == "none"
