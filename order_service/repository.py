"""The order service's collections.

- `orders`: one document per order, with its pending events in `outbox`.
- `order_keys`: one document per (user, idempotency key) while its window lasts: the order
  placed under it (the whole draft and its pending event, so a second request can finish a
  first one that stopped between its two writes). A TTL index removes it at `expires_at`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pymongo import ASCENDING, DESCENDING, ReturnDocument
from pymongo.errors import DuplicateKeyError

from shared.events.models import OrderStatus
from shared.outbox import OUTBOX_FIELD

ORDERS = "orders"
ORDER_KEYS = "order_keys"
PENDING_FIELD = "pending"


class OrderRepository:
    """Reads and single-document writes of orders."""

    def __init__(self, db: Any) -> None:
        self.orders: Any = db[ORDERS]
        self.keys: Any = db[ORDER_KEYS]

    async def ensure_indexes(self) -> None:
        """A user's orders, newest first (the listing's query and sort); keys expire."""
        await self.orders.create_index(
            [("user_id", 1), ("created_at", DESCENDING), ("_id", DESCENDING)],
            name="user_newest_first",
        )
        # Each key document carries its own expiry, so changing the window needs no new index.
        await self.keys.create_index(
            [("expires_at", ASCENDING)], expireAfterSeconds=0, name="expire_at"
        )

    async def insert(self, order: dict[str, Any], outbox: list[dict[str, Any]]) -> bool:
        """Store a new order together with the events it announces; False if an order with
        its id is already stored (a second request finishing a keyed order)."""
        try:
            await self.orders.insert_one({**order, OUTBOX_FIELD: outbox})
        except DuplicateKeyError:
            return False
        return True

    async def keyed(self, key_id: str, now: datetime) -> dict[str, Any] | None:
        """The order draft remembered under a key, unless its window has passed."""
        return await self.keys.find_one({"_id": key_id, "expires_at": {"$gt": now}})

    async def claim_key(
        self,
        key_id: str,
        *,
        user_id: str,
        order: dict[str, Any],
        outbox: list[dict[str, Any]],
        now: datetime,
        expires_at: datetime,
    ) -> dict[str, Any] | None:
        """Remember `order` under the key; None if this call did (go on and store it), else
        the document of the request that got there first. The unique `_id` decides a race."""
        document = {
            "user_id": user_id,
            "order": order,
            PENDING_FIELD: outbox,
            "expires_at": expires_at,
        }
        while True:
            try:
                await self.keys.insert_one({"_id": key_id, **document})
                return None
            except DuplicateKeyError:
                pass
            # A key past its window that the TTL monitor has not removed yet is taken over.
            expired = await self.keys.find_one_and_update(
                {"_id": key_id, "expires_at": {"$lte": now}}, {"$set": document}
            )
            if expired is not None:
                return None
            existing = await self.keyed(key_id, now)
            if existing is not None:
                return existing
            # Removed between the two reads: try again to insert.

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
