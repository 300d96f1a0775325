"""Claims of scheduled firings: the first replica to claim a slot runs it, the others skip.

A claim is never released (a released lock let a slow replica run the slot again,
agronholm/apscheduler#766); it expires long after its slot has passed.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Protocol

import redis.asyncio as redis
from pymongo.errors import DuplicateKeyError

from shared.errors import ServiceUnavailable


class SlotLock(Protocol):
    """Claims a key once across every replica."""

    async def claim(self, key: str) -> bool:
        """True for exactly one caller per key."""
        ...


class RedisSlotLock:
    """`SET key NX EX ttl` in Redis (shared by every replica)."""

    def __init__(self, client: redis.Redis, ttl_seconds: int) -> None:
        self.client = client
        self.ttl_seconds = ttl_seconds

    async def claim(self, key: str) -> bool:
        try:
            return bool(await self.client.set(key, "1", nx=True, ex=self.ttl_seconds))
        except (redis.RedisError, OSError) as exc:
            raise ServiceUnavailable("The lock store is unavailable.") from exc


class MongoSlotLock:
    """A unique `_id` in a `job_runs` collection (shared only when MongoDB is)."""

    def __init__(self, collection: Any) -> None:
        self.collection = collection

    async def claim(self, key: str) -> bool:
        try:
            await self.collection.insert_one({"_id": key, "claimed_at": datetime.now(UTC)})
        except DuplicateKeyError:
            return False
        return True
