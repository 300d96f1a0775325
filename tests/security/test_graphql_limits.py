"""What the gateway refuses before any resolver runs: deep, long, aliased or costly documents,
big bodies, introspection when it is off; GraphiQL and CORS as the environment says."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

import graphql_gateway.limits as limits
from graphql_gateway.settings import GatewaySettings
from tests.security.conftest import gateway_settings, running_gateway

pytestmark = pytest.mark.integration

NESTED = "{ getUserDetails { purchase_history { products { title } } } }"  # depth 3


@contextlib.asynccontextmanager
async def gateway(
    redis_url: str, kafka_broker: str, **overrides: Any
) -> AsyncIterator[httpx.AsyncClient]:
    async with running_gateway(gateway_settings(redis_url, kafka_broker, **overrides)) as running:
        yield running.client


async def post(client: httpx.AsyncClient, query: str) -> dict[str, Any]:
    response = await client.post("/graphql", json={"query": query})
    assert response.status_code == 200, response.text
    assert "Traceback" not in response.text
    body: dict[str, Any] = response.json()
    return body


def messages(body: dict[str, Any]) -> list[str]:
    return [e["message"] for e in body.get("errors", [])]


def codes(body: dict[str, Any]) -> list[str | None]:
    return [(e.get("extensions") or {}).get("code") for e in body.get("errors", [])]


async def test_depth_tokens_aliases_and_cost(redis_url: str, kafka_broker: str) -> None:
    async with gateway(
        redis_url, kafka_broker, graphql_max_depth=2, graphql_max_tokens=60, graphql_max_cost=6
    ) as client:
        deep = await post(client, NESTED)
        assert messages(deep) == ["'anonymous' exceeds maximum operation depth of 2"]

        shallow = await post(client, "{ getUserDetails { id } }")
        assert codes(shallow) == ["UNAUTHENTICATED"]  # passed every limit, then needs a token

        long = await post(client, "{ " + "__typename " * 61 + "}")
        assert len(messages(long)) == 1
        assert "more than 60 tokens" in messages(long)[0]

        aliases = await post(client, "{ " + " ".join(f"a{i}: __typename" for i in range(16)) + " }")
        assert messages(aliases) == ["16 aliases found. Allowed: 15"]

        # Each use of a fragment counts again: 2 x (1 + 2 fields) = 6 is allowed, 7 is not.
        fragment = "fragment F on User { id name } "
        within = await post(
            client, fragment + "{ a: getUserDetails { ...F } b: getUserDetails { ...F } }"
        )
        assert set(codes(within)) == {"UNAUTHENTICATED"}
        costly = await post(
            client, fragment + "{ a: getUserDetails { ...F } b: getUserDetails { ...F email } }"
        )
        assert messages(costly) == ["The query selects 7 fields; at most 6 are allowed."]
        assert codes(costly) == ["BAD_USER_INPUT"]


async def test_broken_documents_are_graphql_errors_not_crashes(
    redis_url: str, kafka_broker: str
) -> None:
    async with gateway(redis_url, kafka_broker) as client:
        for query in (
            "{ ...Nope }",
            "fragment A on User { ...A } { getUserDetails { ...A } }",
            "{",
        ):
            body = await post(client, query)
            assert body["errors"], body
            assert "INTERNAL_SERVER_ERROR" not in codes(body)


async def test_the_validation_cache_keeps_hitting(
    redis_url: str, kafka_broker: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The rules are built once: the same document is validated (and costed) once."""
    costed: list[object] = []
    original = limits._cost

    def counting(*args: Any) -> int:
        costed.append(args[0])
        return original(*args)

    monkeypatch.setattr(limits, "_cost", counting)
    async with gateway(redis_url, kafka_broker) as client:
        query = "{ getUserDetails { id name } }"
        assert codes(await post(client, query)) == ["UNAUTHENTICATED"]
        after_first = len(costed)
        for _ in range(3):
            assert codes(await post(client, query)) == ["UNAUTHENTICATED"]
    assert after_first > 0
    assert len(costed) == after_first


async def test_a_large_body_is_refused(redis_url: str, kafka_broker: str) -> None:
    async with gateway(redis_url, kafka_broker, max_request_body_bytes=1000) as client:
        query = "{ __typename }" + " " * 1200
        declared = await client.post("/graphql", json={"query": query})
        assert declared.status_code == 413
        assert declared.json() == {
            "errors": [
                {
                    "message": "The request body is larger than 1000 bytes.",
                    "extensions": {"code": "BAD_USER_INPUT"},
                }
            ]
        }

        async def chunks() -> AsyncIterator[bytes]:
            yield b'{"query": "{ __typename }'
            for _ in range(20):
                yield b" " * 100
            yield b'"}'

        streamed = await client.post(
            "/graphql", content=chunks(), headers={"content-type": "application/json"}
        )
        assert streamed.status_code == 413

        small = await client.post("/graphql", json={"query": "{ __typename }"})
        assert small.json() == {"data": {"__typename": "Query"}}


INTROSPECTION = "{ __schema { queryType { name } } }"


@pytest.mark.parametrize("enabled", [True, False])
async def test_introspection_switch(redis_url: str, kafka_broker: str, enabled: bool) -> None:
    async with gateway(redis_url, kafka_broker, graphql_introspection=enabled) as client:
        body = await post(client, INTROSPECTION)
        if enabled:
            assert body == {"data": {"__schema": {"queryType": {"name": "Query"}}}}
        else:
            assert body.get("data") is None
            assert messages(body)
            assert all("introspection has been disabled" in m for m in messages(body))
        assert await post(client, "{ __typename }") == {"data": {"__typename": "Query"}}


@pytest.mark.parametrize("enabled", [True, False])
async def test_graphiql_switch(redis_url: str, kafka_broker: str, enabled: bool) -> None:
    async with gateway(redis_url, kafka_broker, graphiql_enabled=enabled) as client:
        page = await client.get("/graphql", headers={"accept": "text/html"})
    if enabled:
        assert page.status_code == 200
        assert "graphiql" in page.text.lower()
    else:
        assert page.status_code == 404


async def test_cors_origins_from_the_environment(redis_url: str, kafka_broker: str) -> None:
    allowed = "https://shop.example"
    preflight = {"access-control-request-method": "POST"}
    async with gateway(redis_url, kafka_broker, cors_origins=f"{allowed}, https://b.example") as c:
        ok = await c.options("/graphql", headers={**preflight, "origin": allowed})
        assert ok.status_code == 200
        assert ok.headers["access-control-allow-origin"] == allowed
        other = await c.options("/graphql", headers={**preflight, "origin": "https://evil.example"})
        assert "access-control-allow-origin" not in other.headers
        simple = await c.post(
            "/graphql", json={"query": "{ __typename }"}, headers={"origin": allowed}
        )
        assert simple.headers["access-control-allow-origin"] == allowed
    async with gateway(redis_url, kafka_broker) as c:
        none = await c.post(
            "/graphql", json={"query": "{ __typename }"}, headers={"origin": allowed}
        )
        assert "access-control-allow-origin" not in none.headers


def test_settings_defaults_are_on_the_safe_side() -> None:
    settings = GatewaySettings(_env_file=None, jwt_secret="x" * 40)
    assert settings.cors_origins == ""
    assert settings.graphql_max_depth >= 4  # the deepest contract query is 3
    assert limits.cors_origins(settings) == []


@pytest.mark.parametrize("body", ['"{ __typename }"', "1", "null", '["x"]', "[1, {}]", "{"])
async def test_a_body_that_is_not_a_request_object_is_a_400(
    redis_url: str, kafka_broker: str, body: str
) -> None:
    """Found by fuzzing: a JSON string as the whole body crashed Strawberry's parser (500)."""
    async with gateway(redis_url, kafka_broker) as client:
        response = await client.post(
            "/graphql", content=body, headers={"content-type": "application/json"}
        )
    assert response.status_code == 400, response.text
    assert "Traceback" not in response.text
