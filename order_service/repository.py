"""The `orders` collection: one document per order, with its pending events in `outbox`."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pymongo import DESCENDING, ReturnDocument

from shared.events.models import OrderStatus
from shared.outbox import OUTBOX_FIELD

ORDERS = "orders"


class OrderRepository:
    """Reads and single-document writes of orders."""

    def __init__(self, db: Any) -> None:
        self.orders: Any = db[ORDERS]

    async def ensure_indexes(self) -> None:
        """A user's orders, newest first (the listing's query and sort)."""
        await self.orders.create_index(
            [("user_id", 1), ("created_at", DESCENDING), ("_id", DESCENDING)],
            name="user_newest_first",
        )

    async def insert(self, order: dict[str, Any], outbox: list[dict[str, Any]]) -> None:
        """Store a new order together with the events it announces."""
        await self.orders.insert_one({**order, OUTBOX_FIELD: outbox})

    async def by_id(self, order_id: str) -> dict[str, Any] | None:
        """The order with that id."""
        return await self.orders.find_one({"_id": order_id}, {OUTBOX_FIELD: 0})

    async def of_user(self, user_id: str, *, limit: int, offset: int) -> list[dict[str, Any]]:
        """A page of the user's orders, newest first."""
        cursor = (
            self.orders.find({"user_id": user_id}, {OUTBOX_FIELD: 0})
            .sort([("created_at", DESCENDING), ("_id", DESCENDING)])
            .skip(offset)
            .limit(limit)
        )
        return list(await cursor.to_list(None))

    async def change_status(
        self,
        order_id: str,
        *,
        expected: OrderStatus,
        status: OrderStatus,
        changed_at: datetime,
        outbox_entry: dict[str, Any],
    ) -> dict[str, Any] | None:
        """Move the order to `status` only if it is still `expected`, queueing its event in the
        same write; None when another change got there first. The order comes back with its
        pending events (`outbox`), oldest first, so they can be published without a read."""
        return await self.orders.find_one_and_update(
            {"_id": order_id, "status": expected},
            {
                "$set": {"status": status, "updated_at": changed_at},
                "$push": {OUTBOX_FIELD: outbox_entry},
            },
            return_document=ReturnDocument.AFTER,
        )

    async def count(self, query: dict[str, Any]) -> int:
        """How many orders match (tests and checks)."""
        return int(await self.orders.count_documents(query))
