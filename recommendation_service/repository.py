"""The recommendation service's collections.

- `requests`: one document per recommendation request (`_id` = request id): status
  `requested` -> `history_received` -> `done`, the history the user service sent, the result, a
  lease while being scored, the pending events (`outbox`), and `latest_pending` from `done`
  until the result is also the user's latest list (a redelivery or the retry pass finishes it).
- `recommendations`: the latest list per user (`_id` = user id).
- `co_purchases`: one document per unordered product pair (`a` <= `b`) with how many orders
  contained both; `orders` lists the counted order ids, so a redelivered order counts once.
"""

from __future__ import annotations

import contextlib
import json
from datetime import datetime, timedelta
from typing import Any

from pymongo import ASCENDING, ReturnDocument
from pymongo.errors import DuplicateKeyError

from recommendation_service.recommender import co_purchase_pairs, pair_key
from shared.outbox import OUTBOX_FIELD

REQUESTS = "requests"
RECOMMENDATIONS = "recommendations"
CO_PURCHASES = "co_purchases"

REQUESTED = "requested"
HISTORY_RECEIVED = "history_received"
DONE = "done"


def _pair_id(first: str, second: str) -> str:
    return json.dumps([first, second])


class RecommendationRepository:
    """Single-document writes only (they work on MongoDB and the in-process store alike)."""

    def __init__(self, db: Any) -> None:
        self.requests: Any = db[REQUESTS]
        self.recommendations: Any = db[RECOMMENDATIONS]
        self.co_purchases: Any = db[CO_PURCHASES]

    async def ensure_indexes(self) -> None:
        """Pair lookups by either side; the retry pass by status and lease."""
        await self.co_purchases.create_index([("a", ASCENDING)], name="pair_a")
        await self.co_purchases.create_index([("b", ASCENDING)], name="pair_b")
        await self.requests.create_index(
            [("status", ASCENDING), ("lease_until", ASCENDING)], name="status_lease"
        )

    # --- co-purchases -------------------------------------------------------------------------

    async def record_order(self, order_id: str, product_ids: list[str]) -> int:
        """Count every pair of the order once; returns how many pairs were newly counted."""
        counted = 0
        for first, second in co_purchase_pairs(product_ids):
            pair_id = _pair_id(first, second)
            with contextlib.suppress(DuplicateKeyError):  # a concurrent upsert created it
                await self.co_purchases.update_one(
                    {"_id": pair_id},
                    {"$setOnInsert": {"a": first, "b": second, "count": 0, "orders": []}},
                    upsert=True,
                )
            result = await self.co_purchases.update_one(
                {"_id": pair_id, "orders": {"$ne": order_id}},
                {"$inc": {"count": 1}, "$push": {"orders": order_id}},
            )
            counted += result.modified_count
        return counted

    async def co_counts(self, product_ids: list[str]) -> dict[tuple[str, str], int]:
        """The counts of every pair that contains one of these products."""
        if not product_ids:
            return {}
        cursor = self.co_purchases.find(
            {"$or": [{"a": {"$in": product_ids}}, {"b": {"$in": product_ids}}]},
            {"a": 1, "b": 1, "count": 1},
        )
        return {
            pair_key(doc["a"], doc["b"]): int(doc["count"]) for doc in await cursor.to_list(None)
        }

    # --- requests -----------------------------------------------------------------------------

    async def insert_request(
        self, request_id: str, user_id: str, now: datetime, outbox: list[dict[str, Any]]
    ) -> None:
        """A new request with its purchase-history question queued in the same write."""
        await self.requests.insert_one(
            {
                "_id": request_id,
                "user_id": user_id,
                "status": REQUESTED,
                "created_at": now,
                "lease_until": now,
                OUTBOX_FIELD: outbox,
            }
        )

    async def store_history(
        self, request_id: str, user_id: str, history: dict[str, Any], now: datetime
    ) -> bool:
        """Keep the history the user service sent; False if the request is already scored."""
        try:
            result = await self.requests.update_one(
                {"_id": request_id, "status": {"$ne": DONE}},
                {
                    "$set": {"status": HISTORY_RECEIVED, "history": history},
                    "$setOnInsert": {"user_id": user_id, "created_at": now, "lease_until": now},
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
