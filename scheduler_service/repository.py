"""The scheduler's collections.

- `subscriptions`: `_id` = user id; email, when subscribed, the product ids already promoted
  (`sent`, the rotation), the last slot served (`last_slot`) and pending events (`outbox`).
- `preferences`: a copy of each user's preferences from `user.registered` and
  `user.preferences-updated` (with the event time, so an older event never wins).
- `purchases`: the product ids each user bought, from `order.placed`.
- `job_runs`: the periods' leases and done marks when no Redis is configured (expire after the
  lock TTL).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo import ASCENDING, ReturnDocument
from pymongo.errors import DuplicateKeyError

from scheduler_service import domain
from shared.outbox import OUTBOX_FIELD
from shared.times import as_utc

SUBSCRIPTIONS = "subscriptions"
PREFERENCES = "preferences"
PURCHASES = "purchases"
JOB_RUNS = "job_runs"


class SchedulerRepository:
    """Single-document writes only."""

    def __init__(self, db: Any) -> None:
        self.subscriptions: Any = db[SUBSCRIPTIONS]
        self.preferences: Any = db[PREFERENCES]
        self.purchases: Any = db[PURCHASES]
        self.job_runs: Any = db[JOB_RUNS]

    async def ensure_indexes(self, lock_ttl_seconds: int) -> None:
        """Old firing claims expire."""
        await self.job_runs.create_index(
            [("claimed_at", ASCENDING)], expireAfterSeconds=lock_ttl_seconds, name="claim_ttl"
        )

    async def subscribe(self, user_id: str, email: str, now: datetime) -> None:
        """Subscribe (again: the same one subscription, its email refreshed)."""
        await self.subscriptions.update_one(
            {"_id": user_id},
            {
                "$set": {"email": email},
                "$setOnInsert": {"subscribed_at": now, "sent": [], "last_slot": None},
            },
            upsert=True,
        )

    async def unsubscribe(self, user_id: str) -> bool:
        """Drop the subscription; False if there was none."""
        result = await self.subscriptions.delete_one({"_id": user_id})
        return bool(result.deleted_count)

    async def subscription(self, user_id: str) -> dict[str, Any] | None:
        """One subscription (tests and checks)."""
        return await self.subscriptions.find_one({"_id": user_id}, {OUTBOX_FIELD: 0})

    async def all_subscriptions(self) -> list[dict[str, Any]]:
        """Every subscription."""
        cursor = self.subscriptions.find({}, {OUTBOX_FIELD: 0}).sort("_id", ASCENDING)
        return list(await cursor.to_list(None))

    async def record_promotion(
        self,
        user_id: str,
        slot: datetime,
        product_id: str,
        restarted: bool,
        outbox: list[dict[str, Any]],
    ) -> bool:
        """Note the promoted product and queue its events, once per user and slot."""
        sent: dict[str, Any] = (
            {"$set": {"sent": [product_id], "last_slot": slot}}
            if restarted
            else {"$set": {"last_slot": slot}, "$push": {"sent": product_id}}
        )
        update = {**sent}
        update.setdefault("$push", {})
        update["$push"] = {**update["$push"], OUTBOX_FIELD: {"$each": outbox}}
        # Once per user and period, and never for a period older than one already served (a
        # catch-up run of an old period after a newer one ran sends nothing).
        result = await self.subscriptions.update_one(
            {"_id": user_id, "last_slot": {"$not": {"$gte": slot}}}, update
        )
        return bool(result.modified_count)

    async def set_preferences(
        self, user_id: str, preferences: list[str], occurred_at: datetime
    ) -> None:
        """Keep the user's preferences unless a newer event already set them."""
        try:
            await self.preferences.find_one_and_update(
                {"_id": user_id, "occurred_at": {"$not": {"$gt": occurred_at}}},
                {"$set": {"preferences": preferences, "occurred_at": occurred_at}},
                upsert=True,
                return_document=ReturnDocument.AFTER,
            )
        except DuplicateKeyError:  # a newer event is stored
            return

    async def preferences_of(self, user_ids: list[str]) -> dict[str, list[str]]:
        """The known preferences of these users."""
        cursor = self.preferences.find({"_id": {"$in": user_ids}})
        return {doc["_id"]: list(doc["preferences"]) for doc in await cursor.to_list(None)}

    async def add_purchases(self, user_id: str, product_ids: list[str]) -> None:
        """Remember what the user bought (idempotent)."""
        await self.purchases.update_one(
            {"_id": user_id},
            {"$addToSet": {"product_ids": {"$each": product_ids}}},
            upsert=True,
        )

    async def purchases_of(self, user_ids: list[str]) -> dict[str, set[str]]:
        """The product ids each of these users bought."""
        cursor = self.purchases.find({"_id": {"$in": user_ids}})
        return {doc["_id"]: set(doc.get("product_ids", [])) for doc in await cursor.to_list(None)}


class MongoSlotLock:
    """The periods' lock store (scheduler_service.locks.SlotLock) when no Redis is set: one
    document per period in `job_runs` (shared only when MongoDB is): `_id` = the period's key,
    its slot, the lease (`token`, `lease_until`) and `done`."""

    def __init__(self, collection: Any, job_name: str, lease_seconds: float) -> None:
        self.collection = collection
        self.job_name = job_name
        self.lease = timedelta(seconds=lease_seconds)

    def _key(self, slot: datetime) -> str:
        return domain.lock_key(self.job_name, slot)

    async def acquire(self, slot: datetime) -> str | None:
        now, token = datetime.now(UTC), uuid.uuid4().hex
        try:
            taken = await self.collection.find_one_and_update(
                {"_id": self._key(slot), "done": {"$ne": True}, "lease_until": {"$lte": now}},
                {
                    "$set": {"lease_until": now + self.lease, "token": token},
                    "$setOnInsert": {
                        "job": self.job_name,
                        "slot": slot,
                        "claimed_at": now,
                        "done": False,
                    },
                },
                upsert=True,
                return_document=ReturnDocument.AFTER,
            )
        except DuplicateKeyError:  # done, or a live lease: the upsert met the existing document
            return None
        return token if taken is not None and taken.get("token") == token else None

    async def complete(self, slot: datetime) -> None:
        await self.collection.update_one(
            {"_id": self._key(slot)}, {"$set": {"done": True}, "$unset": {"token": ""}}
        )

    async def release(self, slot: datetime, token: str) -> None:
        await self.collection.update_one(
            {"_id": self._key(slot), "token": token}, {"$set": {"lease_until": datetime.now(UTC)}}
        )

    async def unfinished(self, since: datetime) -> list[datetime]:
        cursor = self.collection.find(
            {"job": self.job_name, "done": False, "slot": {"$gte": since}}
        ).sort("slot", 1)
        return [as_utc(doc["slot"]) for doc in await cursor.to_list(None)]
