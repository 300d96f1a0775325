"""How order events change a user's purchases and order summary. Pure.

Purchases live in their own collection, one document per order (`purchases`: the order's
products, its purchase date, the statuses already applied, and the events they queued); the
user document keeps only a bounded summary: `order_status` (of the latest order), `orders`
(the latest order's products) and `latest_order` (its id and creation time).

Both order topics carry the order's products and creation time, so whichever event of an order
arrives first (`order.placed` and `order.status-changed` are different topics, so their
relative order is not guaranteed) records the purchase. Each (order, status) is applied once:
the purchase's `statuses` hold the ones already applied, so a redelivered event (same envelope
or not) is a no-op and each status of an order is notified exactly once, in whatever order the
statuses arrive; a late event never moves `order_status` back.

A batch of one user's facts is applied in two steps: first the summary (one write, only if
some fact is new), then each order's new statuses with their events (one write per order). A
crash between them is repaired by the redelivery: the summary is recomputed from the same facts
(the same values), then the statuses are applied.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from shared.events.models import OrderStatus, Preference, ProductLine
from shared.times import as_utc

ORDER_EMAIL_PREFERENCE: Preference = "order_updates"
SHORT_ID_LENGTH = 8
# How far along its life an order is; a late event never moves a status backwards.
STATUS_RANK: dict[str, int] = {"Placed": 0, "Shipped": 1, "Delivered": 2, "Cancelled": 2}

LATEST_FIELD = "latest_order"
VERSION_FIELD = "order_version"
STATUSES_FIELD = "statuses"


@dataclass(frozen=True, slots=True)
class OrderFact:
    """What an order event says about one of a user's orders."""

    order_id: str
    products: list[ProductLine]
    created_at: datetime
    status: OrderStatus


@dataclass(slots=True)
class PurchaseWrite:
    """One order's statuses not applied before, in arrival order, applied in one write of its
    purchase document (created by the first)."""

    order_id: str
    products: list[dict[str, Any]]
    purchase_date: datetime
    facts: list[int] = field(default_factory=list)  # positions in the batch
    statuses: list[str] = field(default_factory=list)


@dataclass(slots=True)
class BatchPlan:
    """What a batch of one user's facts changes: the summary fields the last of them leaves
    (empty: nothing to write) and the purchases to write, in order of first appearance."""

    summary: dict[str, Any] = field(default_factory=dict)
    purchases: dict[str, PurchaseWrite] = field(default_factory=dict)

    @property
    def new_facts(self) -> list[int]:
        """Positions of the facts not applied before, in arrival order."""
        return sorted(n for write in self.purchases.values() for n in write.facts)


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


def summary_change(
    latest: Mapping[str, Any] | None, fact: OrderFact, seen: Sequence[str]
) -> dict[str, Any]:
    """The summary fields a fact sets, given the latest order recorded and the statuses of the
    fact's order seen so far (a fact seen before gives the same answer: idempotent)."""
    if latest is None or (latest["order_id"] != fact.order_id and _is_newer(fact, latest)):
        return {
            "order_status": fact.status,
            "orders": [p.model_dump() for p in fact.products],
            LATEST_FIELD: {"order_id": fact.order_id, "created_at": as_utc(fact.created_at)},
        }
    if latest["order_id"] == fact.order_id:
        ranks = [STATUS_RANK[status] for status in seen]
        if not ranks or STATUS_RANK[fact.status] >= max(ranks):
            return {"order_status": fact.status}
    return {}


def plan_batch(
    user: Mapping[str, Any], applied: Mapping[str, Sequence[str]], facts: Sequence[OrderFact]
) -> BatchPlan:
    """The summary and purchase writes of one user's facts, each planned on what the ones
    before it leave (a batch may hold a status twice). `applied` maps each order of the batch
    that has a purchase document to its applied statuses."""
    plan = BatchPlan()
    latest: Mapping[str, Any] | None = user.get(LATEST_FIELD)
    seen = {order_id: list(statuses) for order_id, statuses in applied.items()}
    for position, fact in enumerate(facts):
        statuses = seen.setdefault(fact.order_id, [])
        change = summary_change(latest, fact, statuses)
        plan.summary.update(change)
        latest = change.get(LATEST_FIELD, latest)
        if fact.status in statuses:
            continue
        statuses.append(fact.status)
        write = plan.purchases.get(fact.order_id)
        if write is None:
            write = plan.purchases[fact.order_id] = PurchaseWrite(
                order_id=fact.order_id,
                products=[p.model_dump() for p in fact.products],
                purchase_date=as_utc(fact.created_at),
            )
        write.facts.append(position)
        write.statuses.append(fact.status)
    if not plan.purchases:
        # Every fact was applied before, summary included (it is written first).
        plan.summary = {}
    return plan


def purchase_fields(user_id: str, write: PurchaseWrite) -> dict[str, Any]:
    """What the first write of an order's purchase stores besides its statuses and events."""
    return {"user_id": user_id, "products": write.products, "purchase_date": write.purchase_date}
