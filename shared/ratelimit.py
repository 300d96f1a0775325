"""Rate limits kept in Redis, with the `limits` library (moving windows, its async Redis storage
on redis-py): one limiter per service, checked per named rule and key (an email, an address)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Protocol

import limits
from limits.aio.storage import Storage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.storage import storage_from_string

from shared.errors import RateLimited
from shared.logging import get_logger

log = get_logger(__name__)

_KEY_PREFIX = "ratelimit"


def parse_limit(text: str) -> limits.RateLimitItem:
    """A limit in the `limits` notation (`10/minute`, `100 per hour`); ValueError if not one."""
    return limits.parse(text)


def _storage_uri(redis_url: str) -> str:
    """The `limits` async storage URI of a redis:// or rediss:// URL."""
    return f"async+{redis_url}"


def hashed(value: str) -> str:
    """A key part that keeps emails and addresses out of Redis key names."""
    return hashlib.sha256(value.encode()).hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class Rule:
    """One limit: its name (part of the key) and how many hits per window."""

    name: str
    limit: limits.RateLimitItem


class LimiterSettings(Protocol):
    """What a service's settings name for its limiter (read-only, so `str` fits `str | None`)."""

    @property
    def service_name(self) -> str: ...

    @property
    def redis_url(self) -> str | None: ...

    @property
    def redis_timeout_seconds(self) -> float: ...


class RateLimiter:
    """Counts hits per rule and key; a rule over its limit raises RATE_LIMITED.

    Without Redis (`redis_url` None) nothing is limited (said once in the log). When Redis does
    not answer, the request is let through and a warning logged: the limiter must not take
    login down with it.
    """

    def __init__(self, redis_url: str | None, *, service: str, timeout_seconds: float) -> None:
        self.service = service
        self._storage: Storage | None = None
        self._limiter: MovingWindowRateLimiter | None = None
        if redis_url:
            storage = storage_from_string(
                _storage_uri(redis_url),
                implementation="redispy",
                key_prefix=f"{_KEY_PREFIX}:{service}",
                wrap_exceptions=True,
                socket_timeout=timeout_seconds,
                socket_connect_timeout=timeout_seconds,
            )
            assert isinstance(storage, Storage), "an async+ URI gives an async storage"
            self._storage = storage
            self._limiter = MovingWindowRateLimiter(storage)
        else:
            log.warning("rate limits are off: no REDIS_URL", service=service)

    @classmethod
    def from_settings(cls, settings: LimiterSettings) -> RateLimiter:
        """The limiter on the service's REDIS_URL (none: nothing is limited), keyed by its name."""
        return cls(
            settings.redis_url,
            service=settings.service_name,
            timeout_seconds=settings.redis_timeout_seconds,
        )

    @property
    def enabled(self) -> bool:
        """Whether limits are enforced (a Redis is configured)."""
        return self._limiter is not None

    async def hit(self, rule: Rule, key: str, message: str) -> None:
        """Count one attempt of `key` under `rule`; RATE_LIMITED once over the limit."""
        if self._limiter is None:
            return
        try:
            allowed = await self._limiter.hit(rule.limit, rule.name, hashed(key))
        except Exception as exc:
            log.warning(
                "rate limit check failed; let through", rule=rule.name, error=type(exc).__name__
            )
            return
        if not allowed:
            log.info("rate limited", rule=rule.name)
            raise RateLimited(message)
