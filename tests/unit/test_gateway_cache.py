"""The gateway cache: one hash per user, read-through, the epoch guard against a read racing an
invalidation, the TTL that is never extended, and degrading to no cache when Redis fails."""

from __future__ import annotations

import time

import fakeredis
import pytest
import redis.asyncio as redis
from structlog.testing import capture_logs

from devstack.parts import free_port
from graphql_gateway.cache import (
    DETAILS_VIEW,
    EPOCH_FIELD,
    MAX_ANSWERS_PER_USER,
    GatewayCache,
    answer_field,
    notifications_view,
    revoked_session_key,
    user_key,
)

TTL = 60


@pytest.fixture
def server() -> fakeredis.FakeAsyncRedis:
    return fakeredis.FakeAsyncRedis()


@pytest.fixture
def cache(server: fakeredis.FakeAsyncRedis) -> GatewayCache:
    return GatewayCache(server, ttl_seconds=TTL, retry_after_seconds=5)


class Fetcher:
    """A downstream call that counts itself and can run something while it is "in flight"."""

    def __init__(self, answer: bytes, during: object = None) -> None:
        self.answer = answer
        self.calls = 0
        self.during = during

    async def __call__(self) -> bytes:
        self.calls += 1
        if self.during is not None:
            await self.during()  # type: ignore[operator]
        return self.answer


def test_each_user_has_one_key_and_each_view_its_own_field() -> None:
    assert user_key("u1") != user_key("u2")
    assert user_key("u1").startswith("gateway:v2:user:")
    fields = [
        DETAILS_VIEW,
        notifications_view(unread_only=True),
        notifications_view(unread_only=False),
        answer_field("abc"),
        EPOCH_FIELD,
    ]
    assert len(set(fields)) == len(fields)


async def test_read_through_fetches_once_until_the_user_is_forgotten(cache: GatewayCache) -> None:
    fetch = Fetcher(b'{"id": "u1"}')
    assert await cache.read_through("u1", DETAILS_VIEW, fetch) == b'{"id": "u1"}'
    assert await cache.read_through("u1", DETAILS_VIEW, fetch) == b'{"id": "u1"}'
    assert fetch.calls == 1
    # Another user and another view are other entries.
    other = Fetcher(b"[]")
    await cache.read_through("u2", DETAILS_VIEW, other)
    await cache.read_through("u1", notifications_view(unread_only=True), other)
    assert other.calls == 2

    await cache.forget_user("u1")
    await cache.read_through("u1", DETAILS_VIEW, fetch)
    assert fetch.calls == 2


async def test_a_change_drops_the_users_entries_after_it_also_when_it_failed(
    cache: GatewayCache, server: fakeredis.FakeAsyncRedis
) -> None:
    fetch = Fetcher(b'{"id": "u1"}')
    await cache.read_through("u1", DETAILS_VIEW, fetch)
    async with cache.changing("u1"):
        # Dropped once the call is over (the change is made then), not before.
        assert await server.exists(user_key("u1"))
    assert not await server.exists(user_key("u1"))

    await cache.read_through("u1", DETAILS_VIEW, fetch)
    with pytest.raises(TimeoutError):
        async with cache.changing("u1"):
            raise TimeoutError("the service did not answer; the change may have been applied")
    assert not await server.exists(user_key("u1"))
    assert fetch.calls == 2


async def test_bytes_fetched_before_an_invalidation_are_not_stored_after_it(
    cache: GatewayCache,
) -> None:
    async def invalidate() -> None:
        await cache.forget_user("u1")

    stale = Fetcher(b'{"status": "old"}', during=invalidate)
    assert await cache.read_through("u1", DETAILS_VIEW, stale) == b'{"status": "old"}'
    fresh = Fetcher(b'{"status": "new"}')
    assert await cache.read_through("u1", DETAILS_VIEW, fresh) == b'{"status": "new"}'
    assert fresh.calls == 1  # the old bytes were not kept


async def test_a_slow_read_does_not_overwrite_a_newer_one(cache: GatewayCache) -> None:
    """The slow read began before an invalidation; a newer read filled the cache meanwhile."""

    async def invalidate_then_refill() -> None:
        await cache.forget_user("u1")
        await cache.read_through("u1", DETAILS_VIEW, Fetcher(b"new"))

    await cache.read_through("u1", DETAILS_VIEW, Fetcher(b"old", during=invalidate_then_refill))
    assert await cache.read_through("u1", DETAILS_VIEW, Fetcher(b"unused")) == b"new"


async def test_the_ttl_is_set_once_and_never_extended(
    cache: GatewayCache, server: fakeredis.FakeAsyncRedis
) -> None:
    await cache.read_through("u1", DETAILS_VIEW, Fetcher(b"{}"))
    assert 0 < await server.ttl(user_key("u1")) <= TTL
    await server.expire(user_key("u1"), 5)
    await cache.read_through("u1", notifications_view(unread_only=False), Fetcher(b"[]"))
    epoch = await cache.open_epoch("u1")
    assert epoch is not None
    assert await cache.store("u1", epoch, answer_field("d"), b"{}", is_answer=True)
    assert await server.ttl(user_key("u1")) <= 5


async def test_answers_per_user_are_bounded(cache: GatewayCache) -> None:
    epoch = await cache.open_epoch("u1")
    assert epoch is not None
    kept = [
        await cache.store("u1", epoch, answer_field(str(n)), b"{}", is_answer=True)
        for n in range(MAX_ANSWERS_PER_USER + 5)
    ]
    assert not all(kept)
    assert kept[0]
    # Data fields are not answers: still kept.
    assert await cache.store("u1", epoch, DETAILS_VIEW, b"{}")


async def test_disabled_cache_never_keeps_anything(server: fakeredis.FakeAsyncRedis) -> None:
    cache = GatewayCache(server, ttl_seconds=TTL, retry_after_seconds=5, enabled=False)
    fetch = Fetcher(b"{}")
    await cache.read_through("u1", DETAILS_VIEW, fetch)
    await cache.read_through("u1", DETAILS_VIEW, fetch)
    assert fetch.calls == 2
    assert await server.keys("*") == []


def unreachable_redis() -> redis.Redis:
    return redis.Redis(port=free_port(), socket_connect_timeout=0.5)


async def test_redis_failure_degrades_to_no_cache() -> None:
    cache = GatewayCache(unreachable_redis(), ttl_seconds=TTL, retry_after_seconds=3600)
    fetch = Fetcher(b'{"id": "u1"}')
    assert await cache.read_through("u1", DETAILS_VIEW, fetch) == b'{"id": "u1"}'
    assert not cache.available()  # the failure opened the retry window
    assert await cache.read_through("u1", DETAILS_VIEW, fetch) == b'{"id": "u1"}'
    assert fetch.calls == 2
    # Invalidation is still attempted (and fails quietly), so nothing stays stale.
    with capture_logs() as logs:
        await cache.forget_user("u1")
    assert [e.get("operation") for e in logs] == ["delete"]
    await cache.close()


async def test_redis_is_tried_again_after_the_retry_window(
    server: fakeredis.FakeAsyncRedis,
) -> None:
    cache = GatewayCache(unreachable_redis(), ttl_seconds=TTL, retry_after_seconds=0)
    await cache.read_through("u1", DETAILS_VIEW, Fetcher(b"{}"))
    assert cache.available()
    # The same cache on a Redis that answers works at once.
    cache._client = server
    fetch = Fetcher(b"{}")
    await cache.read_through("u1", DETAILS_VIEW, fetch)
    await cache.read_through("u1", DETAILS_VIEW, fetch)
    assert fetch.calls == 1


# --- revoked sessions (issue 13) -------------------------------------------------------------


class RoundTrips:
    """Counts what goes to Redis: single commands, and pipelines (one round trip each)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, server: fakeredis.FakeAsyncRedis) -> None:
        self.commands: list[str] = []
        self.pipelines = 0
        single = server.execute_command

        async def command(*args: object, **kwargs: object) -> object:
            self.commands.append(str(args[0]))
            return await single(*args, **kwargs)

        pipeline_execute = redis.client.Pipeline.execute

        async def execute(pipe: redis.client.Pipeline, *args: object, **kwargs: object) -> object:
            self.pipelines += 1
            return await pipeline_execute(pipe, *args, **kwargs)

        monkeypatch.setattr(server, "execute_command", command)
        monkeypatch.setattr(redis.client.Pipeline, "execute", execute)


async def test_a_revoked_session_is_known_until_its_tokens_expire(
    cache: GatewayCache, server: fakeredis.FakeAsyncRedis
) -> None:
    assert await cache.session_revoked("s1") is False
    assert await cache.session_revoked(None) is False
    await cache.revoke_sessions(["s1", "s2"], time.time() + 120)
    assert await cache.session_revoked("s1") is True
    assert await cache.session_revoked("s2") is True
    assert 0 < await server.ttl(revoked_session_key("s1")) <= 121
    # Already past: nothing to remember.
    await cache.revoke_sessions(["s3"], time.time() - 1)
    assert await cache.session_revoked("s3") is False


async def test_the_cached_read_checks_the_session_in_the_same_round_trip(
    cache: GatewayCache, server: fakeredis.FakeAsyncRedis, monkeypatch: pytest.MonkeyPatch
) -> None:
    await server.hset(user_key("u1"), mapping={EPOCH_FIELD: b"e1", answer_field("d"): b"{}"})
    trips = RoundTrips(monkeypatch, server)
    value, epoch, revoked = await cache.lookup_checked("u1", answer_field("d"), "s1")
    assert (value, epoch, revoked) == (b"{}", b"e1", False)
    # One pipeline, no command on its own: the revocation check adds no round trip.
    assert (trips.pipelines, trips.commands) == (1, [])
    await cache.revoke_sessions(["s1"], 4_000_000_000)
    assert (await cache.lookup_checked("u1", answer_field("d"), "s1"))[2] is True


async def test_revocations_work_with_the_cache_turned_off(
    server: fakeredis.FakeAsyncRedis,
) -> None:
    off = GatewayCache(server, ttl_seconds=TTL, retry_after_seconds=5, enabled=False)
    await off.revoke_sessions(["s9"], 4_000_000_000)
    assert await off.session_revoked("s9") is True
    assert (await off.lookup_checked("u1", DETAILS_VIEW, "s9")) == (None, None, True)
