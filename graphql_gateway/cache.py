"""The read cache in Redis: downstream JSON bytes kept for `CACHE_TTL_SECONDS`.

Key scheme (one prefix, versioned so a change of stored shape never reads old entries):

    gateway:v1:user:<user id>:details                  GET /users/me
    gateway:v1:user:<user id>:notifications:unread     GET /notifications?unread_only=true
    gateway:v1:user:<user id>:notifications:all        GET /notifications?unread_only=false

Invalidation: `updateUserPreferences`, `placeOrder`, `updateOrderStatus` (the caller's and the
order owner's), a `UserPreferencesUpdated` and a `UserPurchaseHistoryUpdated` event drop the
details; `markNotificationRead`, a `NotificationRead` event (API or tracking pixel) and a
`NotificationCreated` event drop both notification keys. The TTL bounds what a missed
invalidation leaves behind (Redis down at that moment, or a read that fetched just before a
change and stored just after its invalidation).

Redis is a cache, never a source of truth: any Redis failure is logged as a warning and the
request goes to the service; after a failure, reads skip Redis for `CACHE_RETRY_AFTER_SECONDS`.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

import redis.asyncio as redis

from shared.cache import redis_ready
from shared.logging import get_logger

log = get_logger(__name__)

KEY_PREFIX = "gateway:v1"


def user_details_key(user_id: str) -> str:
    """Where GET /users/me of a user is kept."""
    return f"{KEY_PREFIX}:user:{user_id}:details"


def notifications_key(user_id: str, *, unread_only: bool) -> str:
    """Where a user's notification list (unread only, or all) is kept."""
    which = "unread" if unread_only else "all"
    return f"{KEY_PREFIX}:user:{user_id}:notifications:{which}"


def all_notification_keys(user_id: str) -> list[str]:
    """Every notification key of a user."""
    return [notifications_key(user_id, unread_only=flag) for flag in (True, False)]


class GatewayCache:
    """Read-through cache of downstream bytes; failures degrade to no caching."""

    def __init__(
        self, client: redis.Redis, *, ttl_seconds: int, retry_after_seconds: float
    ) -> None:
        self._client = client
        self._ttl = ttl_seconds
        self._retry_after = retry_after_seconds
        self._skip_until = 0.0

    def _available(self) -> bool:
        return time.monotonic() >= self._skip_until

    def _failed(self, operation: str, exc: Exception) -> None:
        self._skip_until = time.monotonic() + self._retry_after
        log.warning("redis unavailable; serving without cache", operation=operation, error=str(exc))

    async def get(self, key: str) -> bytes | None:
        """The cached bytes, or None (missing, or Redis not answering)."""
        if not self._available():
            return None
        try:
            value = await self._client.get(key)
        except (redis.RedisError, OSError) as exc:
            self._failed("get", exc)
            return None
        if value is None:
            return None
        return value if isinstance(value, bytes) else str(value).encode()

    async def set(self, key: str, value: bytes) -> None:
        """Keep bytes for the TTL (silently skipped if Redis does not answer)."""
        if not self._available():
            return
        try:
            await self._client.set(key, value, ex=self._ttl)
        except (redis.RedisError, OSError) as exc:
            self._failed("set", exc)

    async def delete(self, *keys: str) -> None:
        """Drop keys. Tried even while reads skip Redis, so an entry is not left stale."""
        try:
            await self._client.delete(*keys)
        except (redis.RedisError, OSError) as exc:
            self._failed("delete", exc)

    async def read_through(self, key: str, fetch: Callable[[], Awaitable[bytes]]) -> bytes:
        """The cached bytes, or fetch them and keep them."""
        cached = await self.get(key)
        if cached is not None:
            return cached
        value = await fetch()
        await self.set(key, value)
        return value

    async def drop_user_details(self, user_id: str) -> None:
        """Forget a user's cached details."""
        await self.delete(user_details_key(user_id))

    async def drop_notifications(self, user_id: str) -> None:
        """Forget a user's cached notification lists."""
        await self.delete(*all_notification_keys(user_id))

    async def ready(self) -> bool:
        """Whether Redis answers a PING."""
        return await redis_ready(self._client)

    async def close(self) -> None:
        """Close the connection pool."""
        await self._client.aclose()
