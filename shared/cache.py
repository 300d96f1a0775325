"""The Redis factory (cache, rate limits, locks)."""

from __future__ import annotations

import redis.asyncio as redis


def redis_client(url: str, *, timeout_seconds: float = 1.0) -> redis.Redis:
    """A pooled async Redis client; a slow Redis fails fast instead of stalling callers."""
    return redis.Redis.from_url(
        url,
        socket_timeout=timeout_seconds,
        socket_connect_timeout=timeout_seconds,
        health_check_interval=30,
    )


async def redis_ready(client: redis.Redis) -> bool:
    """Whether Redis answers a PING."""
    try:
        return bool(await client.ping())
    except (redis.RedisError, OSError):
        return False
