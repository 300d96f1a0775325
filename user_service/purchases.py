"""How an order event changes a user's purchase history, order status and latest order. Pure.

Both order topics carry the order's products and creation time, so whichever event of an order
arrives first (`order.placed` and `order.status-changed` are different topics, so their
relative order is not guaranteed) records the order in the history. Each (order, status) is
applied once: `order_events` on the user holds the keys already applied, which makes a
redelivered event (same envelope or not) a no-op, so each status of an order is notified exactly
once, in whatever order the statuses arrive; a late event never moves `order_status` back.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from shared.events.models import OrderStatus, Preference, ProductLine
from shared.times import as_utc

ORDER_EMAIL_PREFERENCE: Preference = "order_updates"
SHORT_ID_LENGTH = 8
# How far along its life an order is; a late event never moves a status backwards.
STATUS_RANK: dict[str, int] = {"Placed": 0, "Shipped": 1, "Delivered": 2, "Cancelled": 2}

APPLIED_FIELD = "order_events"
LATEST_FIELD = "latest_order"
VERSION_FIELD = "order_version"


@dataclass(frozen=True, slots=True)
class OrderFact:
    """What an order event says about one of a user's orders."""

    order_id: str
    products: list[ProductLine]
    created_at: datetime
    status: OrderStatus


@dataclass(frozen=True, slots=True)
class OrderUpdatePlan:
    """The single write that applies a fact to a user's document."""

    applied_key: str
    history_entry: dict[str, Any] | None
    set_fields: dict[str, Any] = field(default_factory=dict)


def applied_key(order_id: str, status: str) -> str:
    """The natural key of an applied order event."""
    return f"{order_id}:{status}"


def short_order_id(order_id: str) -> str:
    """The part of an order id people are shown (ids from the order service end in their most
    varying characters)."""
    return order_id[-SHORT_ID_LENGTH:]


def notification_content(order_id: str, status: str) -> str:
    """The in-app text of an order update."""
    return f"Your order {short_order_id(order_id)} is {status}."


def notification_subject(order_id: str, status: str) -> str:
    """The email subject of an order update."""
    return f"Order {short_order_id(order_id)}: {status}"


def wants_order_emails(user: Mapping[str, Any]) -> bool:
    """Order updates are emailed only to users with the `order_updates` preference."""
    return ORDER_EMAIL_PREFERENCE in user.get("preferences", [])


def _is_newer(fact: OrderFact, latest: Mapping[str, Any]) -> bool:
    """Whether the fact's order was created after the recorded latest order (ties by id)."""
    return (as_utc(fact.created_at), fact.order_id) > (
        as_utc(latest["created_at"]),
        str(latest["order_id"]),
    )


def plan_order_update(user: Mapping[str, Any], fact: OrderFact) -> OrderUpdatePlan | None:
    """The change a fact makes to a user; None when it was applied already."""
    key = applied_key(fact.order_id, fact.status)
    applied: list[str] = list(user.get(APPLIED_FIELD, []))
    if key in applied:
        return None

    prefix = applied_key(fact.order_id, "")
    statuses_seen = [k[len(prefix) :] for k in applied if k.startswith(prefix)]
    # Every write that records an order also marks one of its statuses applied, so the marks
    # tell whether the history holds it: the history itself need not be read.
    in_history = bool(statuses_seen) or any(
        e.get("order_id") == fact.order_id for e in user.get("purchase_history", [])
    )
    history_entry = None
    if not in_history:
        history_entry = {
            "order_id": fact.order_id,
            "products": [p.model_dump() for p in fact.products],
            "purchase_date": as_utc(fact.created_at),
        }

    ranks_seen = [STATUS_RANK[status] for status in statuses_seen]
    is_behind = bool(ranks_seen) and STATUS_RANK[fact.status] < max(ranks_seen)

    latest: Mapping[str, Any] | None = user.get(LATEST_FIELD)
    set_fields: dict[str, Any] = {}
    if latest is None or (latest["order_id"] != fact.order_id and _is_newer(fact, latest)):
        set_fields = {
            "order_status": fact.status,
            "orders": [p.model_dump() for p in fact.products],
            LATEST_FIELD: {"order_id": fact.order_id, "created_at": as_utc(fact.created_at)},
        }
    elif latest["order_id"] == fact.order_id and not is_behind:
        set_fields = {"order_status": fact.status}

    return OrderUpdatePlan(applied_key=key, history_entry=history_entry, set_fields=set_fields)


def after_update(user: Mapping[str, Any], plan: OrderUpdatePlan) -> dict[str, Any]:
    """The user as the plan's write leaves it (so the next fact of a batch is planned on it)."""
    updated = {**user, **plan.set_fields}
    updated[APPLIED_FIELD] = [*user.get(APPLIED_FIELD, []), plan.applied_key]
    if plan.history_entry is not None and "purchase_history" in user:
        updated["purchase_history"] = [*user["purchase_history"], plan.history_entry]
    return updated


@dataclass(slots=True)
class UserOrderWrite:
    """Several plans of one user, in order, as one write: what each pushes, and the fields
    the last of them leaves set."""

    applied_keys: list[str] = field(default_factory=list)
    history_entries: list[dict[str, Any]] = field(default_factory=list)
    set_fields: dict[str, Any] = field(default_factory=dict)

    def add(self, plan: OrderUpdatePlan) -> None:
        """Append a plan made on the user as the plans before it leave it."""
        self.applied_keys.append(plan.applied_key)
        if plan.history_entry is not None:
            self.history_entries.append(plan.history_entry)
        self.set_fields.update(plan.set_fields)
