"""The gateway cache: key scheme, read-through, and degrading to no cache when Redis fails."""

from __future__ import annotations

import redis.asyncio as redis

from graphql_gateway.cache import (
    GatewayCache,
    all_notification_keys,
    notifications_key,
    user_details_key,
)


class BrokenRedis:
    """A Redis that refuses every command, counting them."""

    def __init__(self) -> None:
        self.commands = 0

    async def _refuse(self, *args: object, **kwargs: object) -> None:
        self.commands += 1
        raise redis.ConnectionError("Connection refused")

    get = set = delete = _refuse


def test_keys_share_one_prefix_and_separate_users_and_views() -> None:
    keys = [
        user_details_key("u1"),
        notifications_key("u1", unread_only=True),
        notifications_key("u1", unread_only=False),
        user_details_key("u2"),
    ]
    assert len(set(keys)) == len(keys)
    assert all(key.startswith("gateway:v1:user:") for key in keys)
    assert all_notification_keys("u1") == keys[1:3]


async def test_redis_failure_degrades_to_no_cache() -> None:
    broken = BrokenRedis()
    cache = GatewayCache(broken, ttl_seconds=60, retry_after_seconds=3600)  # type: ignore[arg-type]
    fetched = 0

    async def fetch() -> bytes:
        nonlocal fetched
        fetched += 1
        return b'{"id": "u1"}'

    assert await cache.read_through(user_details_key("u1"), fetch) == b'{"id": "u1"}'
    assert await cache.read_through(user_details_key("u1"), fetch) == b'{"id": "u1"}'
    assert fetched == 2
    # One failed GET, then reads skip Redis for the retry window.
    assert broken.commands == 1
    # Invalidation is still attempted, so nothing stays stale once Redis is back.
    await cache.drop_user_details("u1")
    assert broken.commands == 2


async def test_redis_is_tried_again_after_the_retry_window() -> None:
    broken = BrokenRedis()
    cache = GatewayCache(broken, ttl_seconds=60, retry_after_seconds=0)  # type: ignore[arg-type]

    async def fetch() -> bytes:
        return b"[]"

    await cache.read_through(notifications_key("u1", unread_only=True), fetch)
    await cache.read_through(notifications_key("u1", unread_only=True), fetch)
    # With no window, each read tries its GET and its SET again.
    assert broken.commands == 4
