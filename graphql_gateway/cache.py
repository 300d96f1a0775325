"""The gateway's Redis cache: what the services answered, and whole GraphQL answers, per user.

One hash per user, `gateway:v2:user:<user id>`, holds everything cached for that user:

    epoch                        a random value written when the hash is created
    data:details                 GET /users/me
    data:purchases:<first>       GET /users/me/purchases?first=
    data:notifications:unread    GET /notifications?unread_only=true
    data:notifications:all       GET /notifications?unread_only=false
    answer:<digest>              a whole GraphQL answer (graphql_gateway/answers.py)
    revoked:<session id>         a session of the user that has ended (below)

Invalidation deletes the user's hash: `updateUserPreferences`, `placeOrder`,
`updateOrderStatus` (the caller's and the order owner's), `markNotificationRead`, and the events
`UserPreferencesUpdated`, `UserPurchaseHistoryUpdated`, `NotificationCreated` and
`NotificationRead`. One hash per user makes that a single atomic DEL; an answer may combine
details and notifications, so dropping less would need to know which answer read what.

Writes are guarded by the epoch: a request reads the epoch before it reads any data, and its
write lands only if the epoch is still there and unchanged (WATCH/MULTI). So bytes fetched
before an invalidation are never stored after it, even when the fetch and the invalidation
race. The hash expires `CACHE_TTL_SECONDS` after it was created and is never extended, so no
entry is older than that, whatever was missed (Redis down during an invalidation).

Public answers (the catalog, the same for every caller) are plain keys
`gateway:v2:public:<name>`, each expiring `CATALOG_CACHE_TTL_SECONDS` after it was written;
nothing invalidates them (the catalog changes outside the fleet).

Revoked sessions (logout, password change or reset, a reused refresh token, new roles) are
kept beside the cache until the last access token of that session expires
(`user.sessions-revoked` says when), in one MULTI: `gateway:v2:revoked-session:<session id>`
(what a request checks with one EXISTS), the user's record of them
`gateway:v2:revoked-sessions:<user id>` (session id -> expiry) and a `revoked:<session id>` field
of the user's hash. So a cached read stays one HMGET, [field, epoch, revoked:<session id>], and
no pipeline: in issue 16, redis-py's pipeline (HMGET + EXISTS) cost a fifth of the cached read's
throughput, and a Lua script (one EVALSHA) cost as much on the client and ten times an HMGET's
time in Redis; a set in each replica's memory, fed by the topic, would let a replica that has
not read the event yet serve the ended session's next request. That needs what the hash says
to be whole: a hash with an epoch holds a field for
every ended session of its user. The epoch is only written by `open_epoch`, which copies the
user's record into the hash in the same transaction, under WATCH of the record, so a revocation
racing it makes it try again; a revocation after it writes into the hash itself. A hash without
an epoch (none, or one a revocation just made) proves nothing: that read asks the EXISTS. The
hash's DEL and TTL drop the fields with it, and the next `open_epoch` copies them back.
Revocations do not depend on CACHE_ENABLED (off, no hash is written and every request checks
the key). When Redis fails, tokens are accepted (logged): they still expire within
ACCESS_TOKEN_TTL_SECONDS.

Redis is a cache, never a source of truth: any Redis failure is logged as a warning and the
request goes to the service; after a failure, reads skip Redis for `CACHE_RETRY_AFTER_SECONDS`.
"""

from __future__ import annotations

import math
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Collection
from contextlib import asynccontextmanager

import redis.asyncio as redis
from redis.exceptions import WatchError

from shared.cache import redis_ready
from shared.logging import get_logger

log = get_logger(__name__)

KEY_PREFIX = "gateway:v2"
EPOCH_FIELD = "epoch"
DETAILS_VIEW = "data:details"
ANSWER_PREFIX = "answer:"
REVOKED_PREFIX = "revoked:"
# A client varying its documents cannot grow one user's hash without bound.
MAX_ANSWERS_PER_USER = 64
_EPOCH_BYTES = 8
# How often `open_epoch` tries again when a revocation of the user raced it.
_OPEN_ATTEMPTS = 3

Epoch = bytes


def user_key(user_id: str) -> str:
    """The hash holding everything cached for a user."""
    return f"{KEY_PREFIX}:user:{user_id}"


def purchases_view(first: int) -> str:
    """The field of a user's newest `first` purchases."""
    return f"data:purchases:{first}"


def public_key(name: str) -> str:
    """The key of a public answer (the same for every caller)."""
    return f"{KEY_PREFIX}:public:{name}"


def revoked_session_key(session_id: str) -> str:
    """The key whose presence says the session has ended."""
    return f"{KEY_PREFIX}:revoked-session:{session_id}"


def revoked_sessions_key(user_id: str) -> str:
    """The user's record of ended sessions (session id -> when its last token expires), copied
    into each new hash of the user."""
    return f"{KEY_PREFIX}:revoked-sessions:{user_id}"


def revoked_field(session_id: str) -> str:
    """The field of the user's hash whose presence says the session has ended."""
    return f"{REVOKED_PREFIX}{session_id}"


def notifications_view(*, unread_only: bool) -> str:
    """The field of a user's notification list (unread only, or all)."""
    return f"data:notifications:{'unread' if unread_only else 'all'}"


def answer_field(digest: str) -> str:
    """The field of a whole GraphQL answer."""
    return f"{ANSWER_PREFIX}{digest}"


class GatewayCache:
    """Read-through cache of downstream bytes and whole answers; failures degrade to none.

    `enabled=False` (CACHE_ENABLED=false) turns every read into a miss and every write into
    nothing: each request goes to the services.
    """

    def __init__(
        self,
        client: redis.Redis,
        *,
        ttl_seconds: int,
        retry_after_seconds: float,
        enabled: bool = True,
    ) -> None:
        self._client = client
        self._ttl = ttl_seconds
        self._retry_after = retry_after_seconds
        self._skip_until = 0.0
        self.enabled = enabled

    def available(self) -> bool:
        """Whether reads go to Redis now (enabled, and no recent failure)."""
        return self.enabled and time.monotonic() >= self._skip_until

    def _failed(self, operation: str, exc: Exception) -> None:
        self._skip_until = time.monotonic() + self._retry_after
        log.warning("redis unavailable; serving without cache", operation=operation, error=str(exc))

    async def lookup(self, user_id: str, field: str) -> tuple[bytes | None, Epoch | None]:
        """A field of the user's hash and the hash's epoch, in one round trip; (None, None)
        when Redis is skipped or fails."""
        if not self.available():
            return None, None
        try:
            value, epoch = await self._client.hmget(user_key(user_id), [field, EPOCH_FIELD])
        except (redis.RedisError, OSError) as exc:
            self._failed("hmget", exc)
            return None, None
        return _as_bytes(value), _as_bytes(epoch)

    async def lookup_checked(
        self, user_id: str, field: str, session_id: str | None
    ) -> tuple[bytes | None, Epoch | None, bool]:
        """`lookup`, and whether the session has ended, in one HMGET when the hash has an epoch
        (then it names every ended session of the user); else an EXISTS as well."""
        if session_id is None:
            return *(await self.lookup(user_id, field)), False
        if not self.available():
            return None, None, await self.session_revoked(session_id)
        try:
            value, epoch, revoked = await self._client.hmget(
                user_key(user_id), [field, EPOCH_FIELD, revoked_field(session_id)]
            )
        except (redis.RedisError, OSError) as exc:
            self._failed("hmget", exc)
            return None, None, False
        if revoked is not None:
            return None, None, True
        if epoch is None:
            return _as_bytes(value), None, await self.session_revoked(session_id)
        return _as_bytes(value), _as_bytes(epoch), False

    async def session_revoked(self, session_id: str | None) -> bool:
        """Whether the session has ended; False without a session, or while Redis fails."""
        if session_id is None or time.monotonic() < self._skip_until:
            return False
        try:
            return bool(await self._client.exists(revoked_session_key(session_id)))
        except (redis.RedisError, OSError) as exc:
            self._failed("exists", exc)
            return False

    async def revoke_sessions(
        self, user_id: str, session_ids: list[str], expires_at: float
    ) -> None:
        """Remember the user's ended sessions until `expires_at` (epoch seconds), when their last
        access token expires anyway. Tried even while reads skip Redis."""
        if not session_ids or expires_at <= time.time():
            return
        deadline = math.ceil(expires_at)
        record = revoked_sessions_key(user_id)
        try:
            async with self._client.pipeline(transaction=True) as pipe:
                for session_id in session_ids:
                    pipe.set(revoked_session_key(session_id), b"1", exat=deadline)
                pipe.hset(record, mapping=dict.fromkeys(session_ids, deadline))
                # The record lives as long as its latest session: NX sets a new record's, GT
                # extends an older one's.
                pipe.expireat(record, deadline, nx=True)
                pipe.expireat(record, deadline, gt=True)
                if self.enabled:
                    key = user_key(user_id)
                    pipe.hset(key, mapping=dict.fromkeys(map(revoked_field, session_ids), b"1"))
                    # Only a hash this makes gets a TTL (without an epoch it proves nothing).
                    pipe.expire(key, self._ttl, nx=True)
                await pipe.execute()
        except (redis.RedisError, OSError) as exc:
            self._failed("revoke", exc)

    async def open_epoch(self, user_id: str) -> Epoch | None:
        """The epoch of the user's hash, creating the hash (with its TTL) if there is none, and
        with a field for each of the user's ended sessions."""
        if not self.available():
            return None
        key = user_key(user_id)
        record = revoked_sessions_key(user_id)
        try:
            for _ in range(_OPEN_ATTEMPTS):
                try:
                    return await self._open_epoch(key, record)
                except WatchError:
                    continue  # a revocation of the user came in between: copy it too
        except (redis.RedisError, OSError) as exc:
            self._failed("open_epoch", exc)
        return None

    async def _open_epoch(self, key: str, record: str) -> Epoch | None:
        async with self._client.pipeline(transaction=True) as pipe:
            await pipe.watch(record)
            ended = await pipe.hgetall(record)
            now = time.time()
            live = [_as_text(s) for s, deadline in ended.items() if float(deadline) > now]
            pipe.multi()
            pipe.hsetnx(key, EPOCH_FIELD, secrets.token_hex(_EPOCH_BYTES))
            if live:
                pipe.hset(key, mapping=dict.fromkeys(map(revoked_field, live), b"1"))
            # NX: only a new hash gets a TTL; an existing one keeps its deadline.
            pipe.expire(key, self._ttl, nx=True)
            pipe.hget(key, EPOCH_FIELD)
            *_, epoch = await pipe.execute()
        return _as_bytes(epoch)

    async def store(
        self, user_id: str, epoch: Epoch, field: str, value: bytes, *, is_answer: bool = False
    ) -> bool:
        """Keep `value` in the user's hash if its epoch is still `epoch` (nothing invalidated
        the user since the caller read it); False when it was not stored."""
        if not self.available():
            return False
        key = user_key(user_id)
        try:
            async with self._client.pipeline(transaction=True) as pipe:
                await pipe.watch(key)
                if await pipe.hget(key, EPOCH_FIELD) != epoch:
                    return False
                if is_answer and await pipe.hlen(key) > MAX_ANSWERS_PER_USER:
                    return False
                pipe.multi()
                pipe.hset(key, field, value)
                await pipe.execute()
        except WatchError:
            return False
        except (redis.RedisError, OSError) as exc:
            self._failed("store", exc)
            return False
        return True

    async def read_through(
        self, user_id: str, view: str, fetch: Callable[[], Awaitable[bytes]]
    ) -> bytes:
        """The cached bytes of a view of the user, or fetch them and keep them (unless the
        user was invalidated while fetching)."""
        cached, epoch = await self.lookup(user_id, view)
        if cached is not None:
            return cached
        if epoch is None:
            epoch = await self.open_epoch(user_id)
        value = await fetch()
        if epoch is not None:
            await self.store(user_id, epoch, view, value)
        return value

    async def read_public(
        self, name: str, ttl_seconds: float, fetch: Callable[[], Awaitable[bytes]]
    ) -> bytes:
        """The cached bytes of a public answer, or fetch them and keep them `ttl_seconds`."""
        key = public_key(name)
        if self.available():
            try:
                cached = await self._client.get(key)
            except (redis.RedisError, OSError) as exc:
                self._failed("get", exc)
            else:
                if cached is not None:
                    return _as_bytes(cached) or b""
        value = await fetch()
        if self.available():
            try:
                await self._client.set(key, value, px=max(1, int(ttl_seconds * 1000)))
            except (redis.RedisError, OSError) as exc:
                self._failed("set", exc)
        return value

    async def forget_user(self, user_id: str) -> None:
        """Drop everything cached for a user. Tried even while reads skip Redis, so an entry is
        not left stale."""
        await self.forget_users((user_id,))

    async def forget_users(self, user_ids: Collection[str]) -> None:
        """Drop everything cached for these users, in one round trip."""
        if not self.enabled or not user_ids:
            return
        try:
            await self._client.delete(*(user_key(user_id) for user_id in user_ids))
        except (redis.RedisError, OSError) as exc:
            self._failed("delete", exc)

    @asynccontextmanager
    async def changing(self, user_id: str) -> AsyncIterator[None]:
        """Around a call that changes what is cached for the user (a mutation): their hash is
        dropped after it, also when it failed (a call that timed out may have been applied)."""
        try:
            yield
        finally:
            await self.forget_user(user_id)

    async def ready(self) -> bool:
        """Whether Redis answers a PING."""
        return await redis_ready(self._client)

    async def close(self) -> None:
        """Close the connection pool."""
        await self._client.aclose()


def _as_text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _as_bytes(value: bytes | str | None) -> bytes | None:
    # The client is made without decode_responses; a str only comes from a test double.
    return value.encode() if isinstance(value, str) else value
