"""The recommendation service's collections.

- `requests`: one document per recommendation request (`_id` = request id): status
  `requested` -> `history_received` -> `done`, the history the user service sent, the result, a
  lease while being scored, the pending events (`outbox`), and `latest_pending` from `done`
  until the result is also the user's latest list (a redelivery or the retry pass finishes it).
- `recommendations`: the latest list per user (`_id` = user id).
  A TTL index removes a request at its `expires_at`.
- `co_purchases`: one document per product (`_id` = product id): `top`, the partners most
  often bought in the same order with their counts (bounded, most first), and `orders`, the
  latest order ids counted (bounded), so a redelivered order counts once. One order is one bulk
  write of its products' documents, each conditional on the `version` it was read at.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pymongo import ASCENDING, ReturnDocument, UpdateOne
from pymongo.errors import BulkWriteError, DuplicateKeyError

from recommendation_service.recommender import pair_key, updated_top
from shared.outbox import OUTBOX_FIELD

REQUESTS = "requests"
RECOMMENDATIONS = "recommendations"
CO_PURCHASES = "co_purchases"

REQUESTED = "requested"
HISTORY_RECEIVED = "history_received"
DONE = "done"
DUPLICATE_KEY = 11000
PAIR = 2


class CoPurchasesContended(RuntimeError):
    """Concurrent orders kept changing the same products' documents; the bus retries."""


@dataclass(frozen=True, slots=True)
class CoPurchaseLimits:
    """How large a product's co-purchase document may grow, and how often to retry a write."""

    top_size: int
    recent_orders: int
    write_attempts: int


class RecommendationRepository:
    """Single-document writes only (they work on MongoDB and the in-process store alike)."""

    def __init__(self, db: Any) -> None:
        self.requests: Any = db[REQUESTS]
        self.recommendations: Any = db[RECOMMENDATIONS]
        self.co_purchases: Any = db[CO_PURCHASES]

    async def ensure_indexes(self) -> None:
        """The retry pass by status and lease; requests expire (co-purchases are read by
        `_id`)."""
        await self.requests.create_index(
            [("status", ASCENDING), ("lease_until", ASCENDING)], name="status_lease"
        )
        # Each request carries its own expiry, so changing the TTL needs no new index.
        await self.requests.create_index(
            [("expires_at", ASCENDING)], expireAfterSeconds=0, name="expire_at"
        )

    # --- co-purchases -------------------------------------------------------------------------

    async def record_order(
        self, order_id: str, product_ids: list[str], limits: CoPurchaseLimits
    ) -> int:
        """Count the order once in each of its products' top lists, in one bulk write (again
        for the products a concurrent order changed meanwhile); returns how many products'
        lists counted it now."""
        products = sorted(set(product_ids))
        if len(products) < PAIR:
            return 0
        pending, counted = products, 0
        for _ in range(limits.write_attempts):
            cursor = self.co_purchases.find({"_id": {"$in": pending}})
            stored = {doc["_id"]: doc for doc in await cursor.to_list(None)}
            writes: list[UpdateOne] = []
            targets: list[str] = []
            for product in pending:
                doc = stored.get(product)
                if doc is not None and order_id in doc.get("orders", []):
                    continue  # counted by an earlier delivery
                writes.append(self._count_write(order_id, product, products, doc, limits))
                targets.append(product)
            if not writes:
                return counted
            try:
                await self.co_purchases.bulk_write(writes, ordered=False)
                lost: list[str] = []
            except BulkWriteError as exc:
                errors = exc.details.get("writeErrors", [])
                if any(error.get("code") != DUPLICATE_KEY for error in errors):
                    raise
                # A version that moved (or a document created meanwhile) fails its upsert.
                lost = sorted(targets[error["index"]] for error in errors)
            counted += len(targets) - len(lost)
            if not lost:
                return counted
            pending = lost
        raise CoPurchasesContended(f"order {order_id}: {len(pending)} product(s) kept changing")

    @staticmethod
    def _count_write(
        order_id: str,
        product: str,
        products: list[str],
        doc: dict[str, Any] | None,
        limits: CoPurchaseLimits,
    ) -> UpdateOne:
        partners = [other for other in products if other != product]
        top = updated_top(doc.get("top", []) if doc else [], partners, limits.top_size)
        orders = [*(doc.get("orders", []) if doc else []), order_id][-limits.recent_orders :]
        unchanged = (
            {"_id": product, "version": doc.get("version")}
            if doc is not None and "version" in doc
            else {"_id": product, "version": {"$exists": False}}
        )
        return UpdateOne(
            unchanged,
            {"$set": {"top": top, "orders": orders}, "$inc": {"version": 1}},
            upsert=True,
        )

    async def co_counts(self, product_ids: list[str]) -> dict[tuple[str, str], int]:
        """How often each of these products was bought with each partner of its top list."""
        if not product_ids:
            return {}
        cursor = self.co_purchases.find({"_id": {"$in": product_ids}}, {"top": 1})
        counts: dict[tuple[str, str], int] = {}
        for doc in await cursor.to_list(None):
            for entry in doc.get("top", []):
                key = pair_key(doc["_id"], str(entry["id"]))
                # Both products of a pair may list it (equal unless one list cut it).
                counts[key] = max(counts.get(key, 0), int(entry["count"]))
        return counts

    # --- requests -----------------------------------------------------------------------------

    async def insert_request(
        self,
        request_id: str,
        user_id: str,
        now: datetime,
        outbox: list[dict[str, Any]],
        *,
        expires_at: datetime,
    ) -> None:
        """A new request with its purchase-history question queued in the same write."""
        await self.requests.insert_one(
            {
                "_id": request_id,
                "user_id": user_id,
                "status": REQUESTED,
                "created_at": now,
                "lease_until": now,
                "expires_at": expires_at,
                OUTBOX_FIELD: outbox,
            }
        )

    async def store_history(
        self,
        request_id: str,
        user_id: str,
        history: dict[str, Any],
        now: datetime,
        *,
        expires_at: datetime,
    ) -> bool:
        """Keep the history the user service sent; False if the request is already scored."""
        try:
            result = await self.requests.update_one(
                {"_id": request_id, "status": {"$ne": DONE}},
                {
                    "$set": {"status": HISTORY_RECEIVED, "history": history},
                    "$setOnInsert": {
                        "user_id": user_id,
                        "created_at": now,
                        "lease_until": now,
                        "expires_at": expires_at,
                    },
                },
                upsert=True,
            )
        except DuplicateKeyError:  # it exists and is done
            return False
        return bool(result.matched_count or result.upserted_id is not None)

    async def claim(
        self, request_id: str, now: datetime, lease_seconds: float
    ) -> dict[str, Any] | None:
        """Take a request with its history for scoring, unless someone holds it."""
        return await self.requests.find_one_and_update(
            {"_id": request_id, "status": HISTORY_RECEIVED, "lease_until": {"$lte": now}},
            {"$set": {"lease_until": now + timedelta(seconds=lease_seconds)}},
            projection={OUTBOX_FIELD: 0},
            return_document=ReturnDocument.AFTER,
        )

    async def due(self, now: datetime, limit: int) -> list[str]:
        """Requests with a history whose scoring failed or stalled, or whose result is not yet
        the user's latest list."""
        cursor = self.requests.find(
            {
                "$or": [{"status": HISTORY_RECEIVED}, {"status": DONE, "latest_pending": True}],
                "lease_until": {"$lte": now},
            },
            {"_id": 1},
        ).limit(limit)
        return [doc["_id"] for doc in await cursor.to_list(None)]

    async def complete(
        self,
        request_id: str,
        products: list[dict[str, Any]],
        now: datetime,
        outbox: list[dict[str, Any]],
    ) -> bool:
        """Store the result and queue its events in one write; False if already done. The
        result stays `latest_pending` until `latest_written`."""
        result = await self.requests.update_one(
            {"_id": request_id, "status": HISTORY_RECEIVED},
            {
                "$set": {
                    "status": DONE,
                    "products": products,
                    "generated_at": now,
                    "latest_pending": True,
                },
                "$push": {OUTBOX_FIELD: {"$each": outbox}},
            },
        )
        return bool(result.modified_count)

    async def half_done(self, request_id: str) -> dict[str, Any] | None:
        """A done request whose result is not yet the user's latest list (else None)."""
        found: dict[str, Any] | None = await self.requests.find_one(
            {"_id": request_id, "status": DONE, "latest_pending": True}, {OUTBOX_FIELD: 0}
        )
        return found

    async def latest_written(self, request_id: str) -> None:
        """The request's result is the user's latest list (or a newer one is)."""
        await self.requests.update_one({"_id": request_id}, {"$unset": {"latest_pending": ""}})

    async def set_latest(
        self, user_id: str, request_id: str, products: list[dict[str, Any]], now: datetime
    ) -> None:
        """Remember the user's latest list (an older result never replaces a newer one)."""
        with contextlib.suppress(DuplicateKeyError):  # a newer list is stored
            await self.recommendations.update_one(
                {"_id": user_id, "generated_at": {"$not": {"$gt": now}}},
                {"$set": {"products": products, "request_id": request_id, "generated_at": now}},
                upsert=True,
            )

    async def latest(self, user_id: str) -> list[dict[str, Any]]:
        """The user's latest recommended products ([] before the first)."""
        doc = await self.recommendations.find_one({"_id": user_id})
        return list(doc["products"]) if doc else []
