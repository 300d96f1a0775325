"""Leases on scheduled periods: each period runs to its end exactly once across every replica.

A run first takes the period's lease (`acquire`): none while the period is done or another
run's lease is live. It marks the period done (`complete`) only after its work is written and
published; a run that fails gives its lease back (`release`), and one that crashes simply lets
it expire after `promotion_lease_seconds`. The period stays on the list of unfinished ones
(`unfinished`) until it is done, so the catch-up run of any replica (every
`promotion_retry_seconds`) takes it up again. A period run twice sends nothing twice: each
user's promotion is one conditional write per period (scheduler_service.repository) whose
events have ids derived from the period and the user.

A done mark is kept for `promotion_lock_ttl_seconds` (a released done mark let a slow replica
run the slot again, agronholm/apscheduler#766), and expires long after its slot has passed.

Two stores keep them: Redis (`RedisSlotLock`, here) and, without Redis, MongoDB's `job_runs`
(`scheduler_service.repository.MongoSlotLock`: the database stays the repository's).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Protocol

import redis.asyncio as redis

from scheduler_service import domain
from shared.errors import ServiceUnavailable


class SlotLock(Protocol):
    """Leases and done marks of one job's periods, shared by every replica."""

    async def acquire(self, slot: datetime) -> str | None:
        """A lease on the period (its token), or None: done already, or leased by a live run."""
        ...

    async def complete(self, slot: datetime) -> None:
        """Mark the period done: no run takes it again."""
        ...

    async def release(self, slot: datetime, token: str) -> None:
        """Give back a lease this run holds (its work failed), so another run may start now."""
        ...

    async def unfinished(self, since: datetime) -> list[datetime]:
        """Periods since `since` that were started but are not done, oldest first."""
        ...


def _new_token() -> str:
    return uuid.uuid4().hex


class RedisSlotLock:
    """Keys in Redis (shared by every replica): `<key>:done`, `<key>:lease` (`SET NX PX`), and
    a sorted set of the job's started periods."""

    def __init__(
        self, client: redis.Redis, job_name: str, ttl_seconds: int, lease_seconds: float
    ) -> None:
        self.client = client
        self.job_name = job_name
        self.ttl_seconds = ttl_seconds
        self.lease_ms = int(lease_seconds * 1000)
        self.started_key = f"job-runs:{job_name}:started"

    def _key(self, slot: datetime) -> str:
        return domain.lock_key(self.job_name, slot)

    async def acquire(self, slot: datetime) -> str | None:
        key, token = self._key(slot), _new_token()
        try:
            if await self.client.exists(f"{key}:done"):
                return None
            # Listed before the lease is taken: a crash right after still leaves it findable.
            await self.client.zadd(self.started_key, {_iso(slot): slot.timestamp()})
            taken = await self.client.set(f"{key}:lease", token, nx=True, px=self.lease_ms)
        except (redis.RedisError, OSError) as exc:
            raise ServiceUnavailable("The lock store is unavailable.") from exc
        return token if taken else None

    async def complete(self, slot: datetime) -> None:
        key = self._key(slot)
        try:
            await self.client.set(f"{key}:done", "1", ex=self.ttl_seconds)
            await self.client.zrem(self.started_key, _iso(slot))
            await self.client.delete(f"{key}:lease")
        except (redis.RedisError, OSError) as exc:
            raise ServiceUnavailable("The lock store is unavailable.") from exc

    async def release(self, slot: datetime, token: str) -> None:
        key = f"{self._key(slot)}:lease"
        try:
            held = await self.client.get(key)
            if held is not None and _text(held) == token:
                await self.client.delete(key)
        except (redis.RedisError, OSError) as exc:
            raise ServiceUnavailable("The lock store is unavailable.") from exc

    async def unfinished(self, since: datetime) -> list[datetime]:
        try:
            # Periods older than the window are dropped: they are not taken up again.
            await self.client.zremrangebyscore(self.started_key, "-inf", f"({since.timestamp()}")
            members = await self.client.zrangebyscore(self.started_key, since.timestamp(), "+inf")
        except (redis.RedisError, OSError) as exc:
            raise ServiceUnavailable("The lock store is unavailable.") from exc
        return [datetime.fromisoformat(_text(m)) for m in members if isinstance(m, bytes | str)]


def _iso(slot: datetime) -> str:
    return slot.astimezone(UTC).isoformat()


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
