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
    revoked_field,
    revoked_session_key,
    revoked_sessions_key,
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
    await cache.revoke_sessions("u1", ["s1", "s2"], time.time() + 120)
    assert await cache.session_revoked("s1") is True
    assert await cache.session_revoked("s2") is True
    assert 0 < await server.ttl(revoked_session_key("s1")) <= 121
    # The user's record lives as long as its latest session, never shorter.
    assert 0 < await server.ttl(revoked_sessions_key("u1")) <= 121
    await cache.revoke_sessions("u1", ["s4"], time.time() + 300)
    await cache.revoke_sessions("u1", ["s5"], time.time() + 60)
    assert 240 < await server.ttl(revoked_sessions_key("u1")) <= 301
    # Already past: nothing to remember.
    await cache.revoke_sessions("u1", ["s3"], time.time() - 1)
    assert await cache.session_revoked("s3") is False


async def test_the_cached_read_checks_the_session_in_its_one_command(
    cache: GatewayCache, server: fakeredis.FakeAsyncRedis, monkeypatch: pytest.MonkeyPatch
) -> None:
    epoch = await cache.open_epoch("u1")
    assert epoch is not None
    assert await cache.store("u1", epoch, answer_field("d"), b"{}", is_answer=True)
    trips = RoundTrips(monkeypatch, server)
    value, found_epoch, revoked = await cache.lookup_checked("u1", answer_field("d"), "s1")
    assert (value, found_epoch, revoked) == (b"{}", epoch, False)
    # One HMGET and no pipeline (issue 16: redis-py's pipeline cost a fifth of the cached read).
    assert (trips.pipelines, trips.commands) == (0, ["HMGET"])
    await cache.revoke_sessions("u1", ["s1"], 4_000_000_000)
    trips.commands.clear()
    assert (await cache.lookup_checked("u1", answer_field("d"), "s1"))[2] is True
    assert trips.commands == ["HMGET"]


async def test_a_revoked_session_is_refused_after_its_users_hash_was_dropped_and_refilled(
    cache: GatewayCache, server: fakeredis.FakeAsyncRedis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The hash's revoked fields go with every DEL (or TTL); the next hash, opened and filled by
    another session of the user, must name the ended one again."""
    await cache.read_through("u1", DETAILS_VIEW, Fetcher(b"{}"))
    await cache.revoke_sessions("u1", ["ended"], time.time() + 120)
    await cache.forget_user("u1")
    # Another session of the user misses, opens a new hash and keeps its answer there.
    value, epoch, revoked = await cache.lookup_checked("u1", answer_field("d"), "live")
    assert (value, epoch, revoked) == (None, None, False)
    epoch = await cache.open_epoch("u1")
    assert epoch is not None
    assert await cache.store("u1", epoch, answer_field("d"), b"{}", is_answer=True)
    assert await cache.lookup_checked("u1", answer_field("d"), "live") == (b"{}", epoch, False)

    trips = RoundTrips(monkeypatch, server)
    assert (await cache.lookup_checked("u1", answer_field("d"), "ended"))[2] is True
    # Told by the hash itself, in its one HMGET.
    assert trips.commands == ["HMGET"]
    # Sessions whose tokens have all expired are not copied.
    await server.hset(revoked_sessions_key("u1"), "old", int(time.time()) - 1)
    await cache.forget_user("u1")
    await cache.open_epoch("u1")
    assert not await server.hexists(user_key("u1"), revoked_field("old"))
    assert await server.hexists(user_key("u1"), revoked_field("ended"))


async def test_a_hash_a_revocation_made_does_not_hide_the_users_other_ended_sessions(
    cache: GatewayCache, server: fakeredis.FakeAsyncRedis
) -> None:
    await cache.revoke_sessions("u1", ["first"], time.time() + 120)
    await cache.forget_user("u1")
    # Makes a hash naming only "second", with no epoch: the lookup asks the key as well.
    await cache.revoke_sessions("u1", ["second"], time.time() + 120)
    assert await server.exists(user_key("u1"))
    assert 0 < await server.ttl(user_key("u1")) <= TTL
    assert await cache.lookup_checked("u1", DETAILS_VIEW, "first") == (None, None, True)
    assert await cache.lookup_checked("u1", DETAILS_VIEW, "second") == (None, None, True)
    # Its epoch, once opened, comes with both.
    epoch = await cache.open_epoch("u1")
    assert epoch is not None
    assert (await cache.lookup_checked("u1", DETAILS_VIEW, "first"))[2] is True


async def test_a_revocation_racing_the_opening_of_a_hash_is_copied_into_it(
    cache: GatewayCache, server: fakeredis.FakeAsyncRedis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The revocation lands after `open_epoch` read the user's record and before its MULTI ran:
    the record's WATCH makes it read again."""
    immediate = redis.client.Pipeline.immediate_execute_command
    raced: list[str] = []

    async def read_then_race(
        pipe: redis.client.Pipeline, *args: object, **options: object
    ) -> object:
        answer = await immediate(pipe, *args, **options)
        if args[0] == "HGETALL" and not raced:
            raced.append("racing")
            await cache.revoke_sessions("u1", ["racing"], time.time() + 120)
            await cache.forget_user("u1")  # as `user.sessions-revoked` does after it
        return answer

    monkeypatch.setattr(redis.client.Pipeline, "immediate_execute_command", read_then_race)
    epoch = await cache.open_epoch("u1")
    assert raced == ["racing"]
    assert epoch is not None
    assert await server.hexists(user_key("u1"), revoked_field("racing"))


async def test_revocations_work_with_the_cache_turned_off(
    server: fakeredis.FakeAsyncRedis,
) -> None:
    off = GatewayCache(server, ttl_seconds=TTL, retry_after_seconds=5, enabled=False)
    await off.revoke_sessions("u1", ["s9"], 4_000_000_000)
    assert await off.session_revoked("s9") is True
    assert (await off.lookup_checked("u1", DETAILS_VIEW, "s9")) == (None, None, True)
    # Nothing cached is made for it.
    assert not await server.exists(user_key("u1"))
