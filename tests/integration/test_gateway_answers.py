"""Whole GraphQL answers from Redis (graphql_gateway/answers.py): what is kept, what is never
kept, per user, and dropped with the user's data. The gateway runs under uvicorn against the
HTTP stand-ins of test_gateway_orders, the real broker and the real Redis."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import orjson
import pytest
import redis.asyncio as redis

from graphql_gateway.cache import ANSWER_PREFIX, user_key
from shared.auth import ROLE_CUSTOMER, issue_token
from tests.fixtures.parts import TEST_JWT_SECRET, eventually
from tests.integration import test_gateway_orders
from tests.integration.test_gateway_orders import (
    DETAILS,
    ISSUER,
    LiveGateway,
    Services,
    codes,
    data_of,
    new_user,
    place,
    token_for,
)

pytestmark = pytest.mark.integration
# The stand-ins and the gateway under uvicorn, as fixtures of this module too.
services = test_gateway_orders.services
gateway = test_gateway_orders.gateway

NOTIFICATIONS = "query { getUserNotifications(unreadOnly: false) { id content } }"


@pytest.fixture
async def store(redis_url: str) -> AsyncIterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    try:
        yield client
    finally:
        await client.aclose()


async def answers(store: redis.Redis, user_id: str) -> dict[bytes, bytes]:
    """The whole answers kept for a user."""
    entries: dict[bytes, bytes] = await store.hgetall(user_key(user_id))
    return {k: v for k, v in entries.items() if k.startswith(ANSWER_PREFIX.encode())}


async def kept_answers(store: redis.Redis, user_id: str, count: int = 1) -> dict[bytes, bytes]:
    """The user's answers once `count` are kept: an answer is stored just after it is sent, so
    the client may see it a moment before Redis holds it."""

    async def enough() -> dict[bytes, bytes]:
        found = await answers(store, user_id)
        return found if len(found) >= count else {}

    kept: dict[bytes, bytes] = await eventually(enough, timeout=10, what=f"{count} kept answers")
    return kept


async def test_a_repeated_read_is_answered_from_redis_without_graphql(
    gateway: LiveGateway, services: Services, store: redis.Redis
) -> None:
    user_id, token = new_user(services.users)
    first = await gateway.graphql(DETAILS, token=token)
    assert data_of(first)["getUserDetails"]["id"] == user_id
    kept = await kept_answers(store, user_id)
    assert len(kept) == 1
    # What Redis holds is what is answered: rewrite it, and the rewrite comes back.
    (field,) = kept
    marker = {"data": {"getUserDetails": {"id": "from-redis"}}}
    await store.hset(user_key(user_id), field, orjson.dumps(marker))
    response = await gateway.http.post(
        "/graphql",
        json={"query": DETAILS, "variables": {}},
        headers={"authorization": f"Bearer {token}", "x-correlation-id": "answer-1"},
    )
    assert response.json() == marker
    assert response.headers["content-type"] == "application/json"
    assert response.headers["x-correlation-id"] == "answer-1"


async def test_answers_are_kept_per_user(
    gateway: LiveGateway, services: Services, store: redis.Redis
) -> None:
    alice, alice_token = new_user(services.users)
    bob, bob_token = new_user(services.users)
    for _ in range(2):
        for user_id, token in ((alice, alice_token), (bob, bob_token)):
            details = data_of(await gateway.graphql(DETAILS, token=token))["getUserDetails"]
            assert details["id"] == user_id
    assert len(await kept_answers(store, alice)) == len(await kept_answers(store, bob)) == 1


async def test_a_write_drops_the_kept_answers(
    gateway: LiveGateway, services: Services, store: redis.Redis
) -> None:
    user_id, token = new_user(services.users)
    await gateway.graphql(DETAILS, token=token)
    await gateway.graphql(NOTIFICATIONS, token=token)
    assert len(await kept_answers(store, user_id, 2)) == 2

    services.users.users[user_id]["order_status"] = "Placed"
    await place(gateway, token)
    assert await answers(store, user_id) == {}
    fresh = data_of(await gateway.graphql(DETAILS, token=token))["getUserDetails"]
    assert fresh["order_status"] == "Placed"


async def test_mutations_other_fields_errors_and_bad_tokens_are_never_kept(
    gateway: LiveGateway, services: Services, store: redis.Redis
) -> None:
    user_id, token = new_user(services.users)
    await place(gateway, token)
    await gateway.graphql("query { orders { id } }", token=token)
    # A read naming no cacheable field costs Redis nothing: not even the user's hash is made.
    assert await store.exists(user_key(user_id)) == 0
    await gateway.graphql("query { getUserDetails { id } orders { id } }", token=token)
    assert await answers(store, user_id) == {}

    # A field that failed (the user service does not know this user).
    stranger = uuid.uuid4().hex
    failed = await gateway.graphql(DETAILS, token=token_for(stranger))
    assert failed.get("errors")
    assert await answers(store, stranger) == {}

    refused = await gateway.graphql(DETAILS, token="not-a-token")
    assert codes(refused) == ["UNAUTHENTICATED"]


Headers = list[tuple[str, str]]


def _bad_requests(user_id: str, token: str) -> dict[str, tuple[bytes, Headers]]:
    """Bad requests that get past every check of the cache up to its lookup (a valid token, a
    JSON content-type, a body starting with `{` that names a cacheable field), but one."""
    valid = ("authorization", f"Bearer {token}")
    json_type = ("content-type", "application/json")
    expired = issue_token(
        user_id=user_id,
        email="expired@example.com",
        roles=[ROLE_CUSTOMER],
        secret=TEST_JWT_SECRET,
        issuer=ISSUER,
        ttl_seconds=-1,
    )
    return {
        "not json": (b"{ getUserDetails { id } }", [json_type, valid]),
        "a json array": (b"[" + DETAILS_BODY + b"]", [json_type, valid]),
        "variables not an object": (
            orjson.dumps({"query": DETAILS, "variables": "getUserDetails"}),
            [json_type, valid],
        ),
        "a broken document": (
            orjson.dumps({"query": "{ getUserDetails { id "}),
            [json_type, valid],
        ),
        "wrong content-type": (DETAILS_BODY, [("content-type", "text/plain"), valid]),
        "huge body": (
            orjson.dumps({"query": DETAILS + " " * 70_000}),  # over MAX_REQUEST_BODY_BYTES
            [json_type, valid],
        ),
        "invalid token": (DETAILS_BODY, [json_type, ("authorization", "Bearer not-a-token")]),
        "expired token": (DETAILS_BODY, [json_type, ("authorization", f"Bearer {expired}")]),
        # The first of two Authorization headers is the one GraphQL reads.
        "an invalid token, then a valid one": (
            DETAILS_BODY,
            [json_type, ("authorization", "Bearer not-a-token"), valid],
        ),
    }


DETAILS_BODY = orjson.dumps({"query": DETAILS, "variables": {}})


@pytest.mark.parametrize("case", list(_bad_requests("u", "t")))
async def test_bad_requests_answer_the_same_with_and_without_the_cache(
    gateway: LiveGateway, services: Services, store: redis.Redis, case: str
) -> None:
    user_id, token = new_user(services.users)
    # The user's good read of the same body is kept: a bad request must not be answered by it.
    primed = await gateway.http.post(
        "/graphql",
        content=DETAILS_BODY,
        headers={"content-type": "application/json", "authorization": f"Bearer {token}"},
    )
    assert primed.status_code == 200
    kept = await kept_answers(store, user_id)
    assert len(kept) == 1
    body, headers = _bad_requests(user_id, token)[case]

    async def answer() -> tuple[int, bytes]:
        response = await gateway.http.post("/graphql", content=body, headers=headers)
        return response.status_code, response.content

    # Twice: the second would be a hit had the first been kept.
    cached = [await answer(), await answer()]
    cache = gateway.app.state.gateway.cache
    cache.enabled = False
    try:
        uncached = await answer()
    finally:
        cache.enabled = True
    assert cached == [uncached, uncached]
    assert uncached[0] < 500, uncached
    assert b"Traceback" not in uncached[1]
    assert await answers(store, user_id) == kept
