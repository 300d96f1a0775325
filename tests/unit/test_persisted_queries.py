"""Persisted queries (graphql_gateway/persisted.py) without a gateway: the local copies are
bounded, and Redis down only means "not found" (the client then sends the document)."""

from __future__ import annotations

import pytest
import redis.asyncio as redis

from graphql_gateway.persisted import LocalDocuments, PersistedQueries, document_hash
from shared.errors import (
    CODE_FOR_STATUS,
    BadUserInput,
    ErrorCode,
    PersistedQueryNotFound,
    PersistedQueryNotSupported,
)


def test_local_documents_keep_the_most_recently_used() -> None:
    local = LocalDocuments(2)
    local.put("a", "A")
    local.put("b", "B")
    assert local.get("a") == "A"  # now the most recent
    local.put("c", "C")
    assert (local.get("a"), local.get("b"), local.get("c")) == ("A", None, "C")


def extensions(query: str, version: int = 1) -> dict[str, object]:
    return {"persistedQuery": {"version": version, "sha256Hash": document_hash(query)}}


async def test_redis_down_is_not_found_and_registering_does_not_fail() -> None:
    # Nothing listens on port 1: every call fails at once.
    client = redis.Redis.from_url("redis://127.0.0.1:1/0", socket_timeout=0.5)
    store = PersistedQueries(client, ttl_seconds=60, local_size=8)
    query = "{ __typename }"
    with pytest.raises(PersistedQueryNotFound):
        await store.resolve(None, extensions(query))
    resolved = await store.resolve(query, extensions(query))
    assert resolved.register == document_hash(query)
    await store.register(document_hash(query), query)
    # Kept in this replica's memory all the same.
    assert (await store.resolve(None, extensions(query))).query == query
    await client.aclose()


async def test_bad_persisted_extensions_are_refused() -> None:
    store = PersistedQueries(None, ttl_seconds=60, local_size=8)
    query = "{ __typename }"
    with pytest.raises(PersistedQueryNotSupported):  # APQ off
        await store.resolve(None, extensions(query))
    on = PersistedQueries(redis.Redis(), ttl_seconds=60, local_size=8)
    with pytest.raises(PersistedQueryNotSupported):
        await on.resolve(query, extensions(query, version=2))
    with pytest.raises(BadUserInput):
        await on.resolve(query, {"persistedQuery": {"version": 1, "sha256Hash": "abc"}})
    assert (await on.resolve(query, None)).query == query


def test_a_bare_status_never_reads_as_a_persisted_query_code() -> None:
    assert CODE_FOR_STATUS[404] is ErrorCode.NOT_FOUND
    assert 400 not in CODE_FOR_STATUS
