"""GraphQL over HTTP as Apollo's clients and the GraphQL-over-HTTP spec expect it
(graphql_gateway/http_transport.py, persisted.py): automatic persisted queries, GET, CSRF,
batching, the spec's media type, JSON errors, Cache-Control of public queries, trusted
documents. The gateway runs under uvicorn against the HTTP stand-ins of test_gateway_orders,
the real broker and the real Redis."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import redis.asyncio as redis
import strawberry
from starlette.applications import Starlette
from starlette.routing import Route

from bench.run import persisted_get_url
from graphql_gateway.http_transport import GRAPHQL_RESPONSE_JSON, GraphQLTransport
from graphql_gateway.http_view import GraphQLOverHTTP, public_answers
from graphql_gateway.persisted import KEY_PREFIX, MANIFEST_FORMAT, document_hash
from graphql_gateway.settings import GatewaySettings
from tests.fixtures.apps import asgi_client
from tests.integration import test_gateway_answers, test_gateway_orders
from tests.integration.test_gateway import running_gateway
from tests.integration.test_gateway_answers import answers, kept_answers
from tests.integration.test_gateway_orders import (
    LiveGateway,
    Services,
    codes,
    data_of,
    new_user,
)

pytestmark = pytest.mark.integration
services = test_gateway_orders.services
gateway = test_gateway_orders.gateway
store = test_gateway_answers.store

PREFLIGHT = {"apollo-require-preflight": "true"}
GRAPHQL_JSON = {"accept": GRAPHQL_RESPONSE_JSON}


def unique_details() -> str:
    """A document no other test sends (a fresh operation name), so its hash is unknown."""
    return f"query Details_{uuid.uuid4().hex} {{ getUserDetails {{ id name }} }}"


def persisted(query: str, *, version: int = 1) -> dict[str, Any]:
    return {"persistedQuery": {"version": version, "sha256Hash": document_hash(query)}}


def bearer(token: str, **extra: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}", **extra}


async def post(gateway: LiveGateway, body: Any, headers: dict[str, str]) -> httpx.Response:
    return await gateway.http.post("/graphql", content=orjson.dumps(body), headers={
        "content-type": "application/json", **headers,
    })  # fmt: skip


async def get(gateway: LiveGateway, params: dict[str, Any], headers: dict[str, str]) -> Any:
    encoded = {k: v if isinstance(v, str) else json.dumps(v) for k, v in params.items()}
    return await gateway.http.get("/graphql", params=encoded, headers=headers)


# --- automatic persisted queries -----------------------------------------------------------


async def test_a_hash_alone_is_not_found_until_registered_then_runs_by_post_and_get(
    gateway: LiveGateway, services: Services, store: redis.Redis
) -> None:
    user_id, token = new_user(services.users)
    query = unique_details()
    unknown = await post(gateway, {"extensions": persisted(query)}, bearer(token))
    assert unknown.status_code == 200
    assert unknown.json()["errors"] == [
        {"message": "PersistedQueryNotFound", "extensions": {"code": "PERSISTED_QUERY_NOT_FOUND"}}
    ]

    registered = await post(
        gateway, {"query": query, "extensions": persisted(query)}, bearer(token)
    )
    assert data_of(registered.json())["getUserDetails"]["id"] == user_id
    key = KEY_PREFIX + document_hash(query)
    assert await store.get(key) == query.encode()
    ttl = await store.ttl(key)
    assert 0 < ttl <= GatewaySettings.model_fields["apq_ttl_seconds"].default

    by_post = await post(gateway, {"extensions": persisted(query)}, bearer(token))
    assert data_of(by_post.json())["getUserDetails"]["id"] == user_id
    by_get = await get(gateway, {"extensions": persisted(query)}, bearer(token, **PREFLIGHT))
    assert by_get.status_code == 200, by_get.text
    assert data_of(by_get.json())["getUserDetails"]["id"] == user_id


async def test_the_hash_is_checked_and_an_invalid_document_is_not_kept(
    gateway: LiveGateway, services: Services, store: redis.Redis
) -> None:
    _, token = new_user(services.users)
    query = unique_details()
    other = unique_details()
    lying = await post(gateway, {"query": query, "extensions": persisted(other)}, bearer(token))
    assert codes(lying.json()) == ["BAD_USER_INPUT"]
    assert await store.exists(KEY_PREFIX + document_hash(other)) == 0

    invalid = f"query Invalid_{uuid.uuid4().hex} {{ noSuchField }}"
    refused = await post(gateway, {"query": invalid, "extensions": persisted(invalid)}, {})
    assert refused.json()["errors"][0]["message"].startswith("Cannot query field")
    assert await store.exists(KEY_PREFIX + document_hash(invalid)) == 0

    version_2 = await post(gateway, {"query": query, "extensions": persisted(query, version=2)}, {})
    assert codes(version_2.json()) == ["PERSISTED_QUERY_NOT_SUPPORTED"]


async def test_the_store_is_shared_by_every_replica(
    gateway: LiveGateway, services: Services, redis_url: str, kafka_broker: str
) -> None:
    user_id, token = new_user(services.users)
    query = unique_details()
    await post(gateway, {"query": query, "extensions": persisted(query)}, bearer(token))
    settings = gateway.app.state.gateway.settings.model_copy()
    async with running_gateway(settings) as replica:
        response = await replica.http.post(
            "/graphql", json={"extensions": persisted(query)}, headers=bearer(token)
        )
    assert data_of(response.json())["getUserDetails"]["id"] == user_id


async def test_a_query_registered_while_its_answer_is_cached_runs_by_hash_after(
    gateway: LiveGateway, services: Services, store: redis.Redis
) -> None:
    """Apollo's link registers (query + hash) after a hash-alone miss; when the answer is
    already kept, Strawberry does not run, and the hash must be registered all the same."""
    user_id, token = new_user(services.users)
    query = unique_details()
    await post(gateway, {"query": query}, bearer(token))  # the answer is kept
    await kept_answers(store, user_id)
    missed = await get(gateway, {"extensions": persisted(query)}, bearer(token, **PREFLIGHT))
    assert codes(missed.json()) == ["PERSISTED_QUERY_NOT_FOUND"]
    registered = await post(
        gateway, {"query": query, "extensions": persisted(query)}, bearer(token)
    )
    assert data_of(registered.json())["getUserDetails"]["id"] == user_id
    by_hash = await get(gateway, {"extensions": persisted(query)}, bearer(token, **PREFLIGHT))
    assert data_of(by_hash.json())["getUserDetails"]["id"] == user_id


async def test_persisted_reads_share_the_answer_cache_and_the_limits(
    gateway: LiveGateway, services: Services, store: redis.Redis
) -> None:
    user_id, token = new_user(services.users)
    query = unique_details()
    await post(gateway, {"query": query, "extensions": persisted(query)}, bearer(token))
    kept = await kept_answers(store, user_id)
    assert len(kept) == 1
    # The same operation by hash, by POST or GET, is the same answer: rewrite it, and the
    # rewrite comes back without GraphQL running.
    (field,) = kept
    marker = {"data": {"getUserDetails": {"id": "from-redis", "name": "cached"}}}
    await store.hset(f"gateway:v2:user:{user_id}", field, orjson.dumps(marker))
    by_get = await get(gateway, {"extensions": persisted(query)}, bearer(token, **PREFLIGHT))
    assert by_get.json() == marker
    assert by_get.headers["cache-control"] == "no-store"
    by_post = await post(gateway, {"extensions": persisted(query)}, bearer(token))
    assert by_post.json() == marker
    assert len(await answers(store, user_id)) == 1

    # The limits hold for a persisted document too: refused, it is never kept.
    aliases = gateway.app.state.gateway.settings.graphql_max_aliases + 1
    costly = "query Aliased { " + " ".join(f"a{i}: __typename" for i in range(aliases)) + " }"
    first = await post(gateway, {"query": costly, "extensions": persisted(costly)}, {})
    assert "aliases" in first.json()["errors"][0]["message"], first.text
    again = await post(gateway, {"extensions": persisted(costly)}, {})
    assert codes(again.json()) == ["PERSISTED_QUERY_NOT_FOUND"]


# --- GET, CSRF, GraphiQL -------------------------------------------------------------------


async def test_get_runs_queries_with_variables_and_operation_name(
    gateway: LiveGateway, services: Services
) -> None:
    _, token = new_user(services.users)
    services.notifications.add(new_user(services.users)[0], "not mine")
    params = {
        "query": "query A { __typename } query Notes($all: Boolean) "
        "{ getUserNotifications(unreadOnly: $all) { id } }",
        "operationName": "Notes",
        "variables": {"all": False},
        "extensions": {"some": "value"},
    }
    response = await get(gateway, params, bearer(token, **PREFLIGHT))
    assert response.status_code == 200, response.text
    assert response.json() == {"data": {"getUserNotifications": []}}
    assert response.headers["content-type"] == "application/json"
    assert response.headers["cache-control"] == "no-store"


async def test_get_never_runs_a_mutation(gateway: LiveGateway, services: Services) -> None:
    _, token = new_user(services.users)
    before = services.scheduler.calls.total
    for headers in (bearer(token, **PREFLIGHT), bearer(token, **PREFLIGHT, **GRAPHQL_JSON)):
        response = await get(gateway, {"query": "mutation { taskSchedular }"}, headers)
        assert response.status_code == 405
        assert response.headers["allow"] == "POST"
        assert response.json()["errors"][0]["message"].startswith("Only queries run by GET")
    assert services.scheduler.calls.total == before


@pytest.mark.parametrize(
    ("method", "headers"),
    [
        ("GET", {}),
        ("GET", {"content-type": "text/plain"}),
        ("POST", {"content-type": "text/plain"}),
        ("POST", {"content-type": "application/x-www-form-urlencoded"}),
        ("POST", {"content-type": "multipart/form-data; boundary=x"}),
        ("POST", {}),
    ],
)
async def test_requests_a_form_could_send_are_refused_as_csrf(
    gateway: LiveGateway, method: str, headers: dict[str, str]
) -> None:
    body = orjson.dumps({"query": "{ __typename }"})
    response = await gateway.http.request(
        method,
        "/graphql",
        params={"query": "{ __typename }"} if method == "GET" else None,
        content=body if method == "POST" else None,
        headers=headers,
    )
    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == "application/json"
    (error,) = response.json()["errors"]
    assert "cross-site request forgery" in error["message"]
    # The same request with a header a form cannot send runs (a POST still needs JSON).
    for preflight in ({"apollo-require-preflight": "1"}, {"x-apollo-operation-name": "Q"}):
        allowed = await gateway.http.request(
            method,
            "/graphql",
            params={"query": "{ __typename }"} if method == "GET" else None,
            content=body if method == "POST" else None,
            headers={**headers, **preflight},
        )
        assert allowed.status_code == (200 if method == "GET" else 415), allowed.text
        assert "errors" not in allowed.json() or method == "POST"


async def test_graphiql_still_opens_for_a_browser(gateway: LiveGateway) -> None:
    page = await gateway.http.get("/graphql", headers={"accept": "text/html,*/*;q=0.8"})
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "graphiql" in page.text.lower()
    # Not for a client asking for JSON with no operation.
    missing = await gateway.http.get("/graphql", headers={"accept": "*/*", **PREFLIGHT})
    assert missing.status_code == 400
    assert missing.json()["errors"][0]["message"] == "No GraphQL query found in the request."


# --- batching ------------------------------------------------------------------------------


async def test_a_batch_answers_an_array_in_order_each_with_its_own_errors(
    gateway: LiveGateway, services: Services
) -> None:
    user_id, token = new_user(services.users)
    batch = [
        {"query": "{ getUserDetails { id } }"},
        {"query": "{ noSuchField }"},
        {"query": "query Q($id: ID!) { __typename }", "variables": {}},
        {"extensions": persisted(unique_details())},
        {"query": "{ orders { id } }"},
    ]
    response = await post(gateway, batch, bearer(token))
    assert response.status_code == 200
    details, unknown, missing_variable, not_found, orders = response.json()
    assert details == {"data": {"getUserDetails": {"id": user_id}}}
    assert unknown["data"] is None
    assert unknown["errors"][0]["message"].startswith("Cannot query field 'noSuchField'")
    assert "$id" in missing_variable["errors"][0]["message"]
    assert codes(not_found) == ["PERSISTED_QUERY_NOT_FOUND"]
    assert orders == {"data": {"orders": []}}


async def test_a_batch_is_capped(gateway: LiveGateway) -> None:
    cap = gateway.app.state.gateway.settings.graphql_batch_max_operations
    at_cap = await post(gateway, [{"query": "{ __typename }"}] * cap, {})
    assert [item["data"] for item in at_cap.json()] == [{"__typename": "Query"}] * cap
    over = await post(gateway, [{"query": "{ __typename }"}] * (cap + 1), {})
    assert over.status_code == 400
    assert over.json()["errors"][0]["message"] == f"A batch holds at most {cap} operations."
    empty = await post(gateway, [], {})
    assert empty.status_code == 400


# --- media types and JSON errors -----------------------------------------------------------


async def test_the_specs_media_type_answers_request_errors_with_4xx_and_no_data(
    gateway: LiveGateway, services: Services
) -> None:
    _, token = new_user(services.users)
    cases = {
        "{ __typename": 400,  # parse
        "{ noSuchField }": 400,  # validation
        "query Q($id: ID!) { __typename }": 400,  # variables
    }
    for query, status in cases.items():
        response = await post(gateway, {"query": query}, GRAPHQL_JSON)
        assert response.status_code == status, (query, response.text)
        assert response.headers["content-type"] == GRAPHQL_RESPONSE_JSON
        body = response.json()
        assert "data" not in body
        assert body["errors"]
        # application/json: 200 and `data: null`, as the original's clients expect.
        legacy = await post(gateway, {"query": query}, {"accept": "application/json"})
        assert legacy.status_code == 200
        assert legacy.json()["data"] is None
    not_found = await post(gateway, {"extensions": persisted(unique_details())}, GRAPHQL_JSON)
    assert not_found.status_code == 404
    assert "data" not in not_found.json()
    # A field error keeps its data entry and 200.
    denied = await post(gateway, {"query": "{ getUserDetails { id } }"}, GRAPHQL_JSON)
    assert denied.status_code == 200
    assert codes(denied.json()) == ["UNAUTHENTICATED"]
    ok = await post(
        gateway, {"query": "{ getUserDetails { id } }"}, {**GRAPHQL_JSON, **bearer(token)}
    )
    assert ok.status_code == 200
    assert ok.headers["content-type"] == GRAPHQL_RESPONSE_JSON


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        ("", "application/json"),
        ("*/*", "application/json"),
        ("application/json", "application/json"),
        (GRAPHQL_RESPONSE_JSON, GRAPHQL_RESPONSE_JSON),
        (f"{GRAPHQL_RESPONSE_JSON}, application/json;q=0.9", GRAPHQL_RESPONSE_JSON),
        (f"application/json, {GRAPHQL_RESPONSE_JSON};q=0.5", "application/json"),
    ],
)
async def test_the_answer_has_the_media_type_asked_for(
    gateway: LiveGateway, accept: str, expected: str
) -> None:
    response = await post(gateway, {"query": "{ __typename }"}, {"accept": accept})
    assert response.status_code == 200
    assert response.headers["content-type"] == expected


@pytest.mark.parametrize(
    ("body", "headers", "status"),
    [
        (b"{ not json", {}, 400),
        (b"", {}, 400),
        (b'"a string"', {}, 400),
        (b'{"query": 1}', {}, 400),
        (b'{"query": "{ __typename }", "variables": "x"}', {}, 400),
        (b'{"query": "{ __typename }", "extensions": []}', {}, 400),
        (b'{"qeury": "{ __typename }"}', {}, 400),
        (b'{"query": "{ __typename }"}', {"accept": "text/csv"}, 406),
        (b'{"query": "{ __typename }"}', {"content-type": "application/graphql"}, 415),
    ],
)
async def test_every_refusal_is_a_json_graphql_error(
    gateway: LiveGateway, body: bytes, headers: dict[str, str], status: int
) -> None:
    response = await gateway.http.post(
        "/graphql", content=body, headers={"content-type": "application/json", **headers}
    )
    assert response.status_code == status, response.text
    assert response.headers["content-type"] in ("application/json", GRAPHQL_RESPONSE_JSON)
    (error,) = response.json()["errors"]
    assert error["message"]
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    other_method = await gateway.http.put("/graphql", content=body)
    assert other_method.status_code == 405
    assert other_method.headers["allow"] == "GET, POST"
    assert other_method.json()["errors"]


# --- Cache-Control of public queries (a test-only schema: the catalog fields land later) ----


@strawberry.type
class CatalogQuery:
    @strawberry.field
    def products(self) -> list[str]:
        return ["tea", "cup"]

    @strawberry.field
    def me(self) -> str:
        return "private"


class CatalogView(GraphQLOverHTTP):
    public_max_age_seconds = 120

    async def get_context(self, request: Any, response: Any) -> Any:
        return type("Context", (), {"request": request, "response": response})()


def catalog_app() -> Starlette:
    schema = strawberry.Schema(
        query=CatalogQuery, extensions=[public_answers(frozenset({"products"}))]
    )
    app = Starlette(routes=[Route("/graphql", CatalogView(schema), methods=["GET", "POST"])])
    app.add_middleware(GraphQLTransport, path="/graphql", max_batch=5)
    return app


async def test_a_public_query_by_get_may_be_kept_by_a_cdn() -> None:
    async with asgi_client(catalog_app(), "catalog") as client:

        async def fetch(query: str, method: str = "GET") -> httpx.Response:
            if method == "GET":
                return await client.get("/graphql", params={"query": query}, headers=PREFLIGHT)
            return await client.post("/graphql", json={"query": query})

        public = await fetch("{ products __typename }")
        assert public.json() == {"data": {"products": ["tea", "cup"], "__typename": "CatalogQuery"}}
        assert public.headers["cache-control"] == "public, max-age=120"
        assert public.headers["vary"] == "accept"
        for private in (
            await fetch("{ products me }"),
            await fetch("{ __typename }"),
            await fetch("{ products nope }"),
        ):
            assert private.headers["cache-control"] == "no-store"
        assert "cache-control" not in (await fetch("{ products }", "POST")).headers


# --- trusted documents ---------------------------------------------------------------------


async def test_only_trusted_documents_run_when_asked(
    gateway: LiveGateway, services: Services, tmp_path: Path
) -> None:
    user_id, token = new_user(services.users)
    trusted = "query Trusted { getUserDetails { id } }"
    manifest = tmp_path / "manifest.json"
    manifest.write_text(
        json.dumps(
            {
                "format": MANIFEST_FORMAT,
                "version": 1,
                "operations": [
                    {
                        "id": document_hash(trusted),
                        "name": "Trusted",
                        "type": "query",
                        "body": trusted,
                    }
                ],
            }
        )
    )
    settings = gateway.app.state.gateway.settings.model_copy(
        update={"trusted_documents_only": True, "trusted_documents_manifest": manifest}
    )
    async with running_gateway(settings) as strict:

        async def send(body: dict[str, Any]) -> dict[str, Any]:
            response = await strict.http.post("/graphql", json=body, headers=bearer(token))
            result: dict[str, Any] = response.json()
            return result

        by_hash = await send({"extensions": persisted(trusted)})
        assert data_of(by_hash)["getUserDetails"]["id"] == user_id
        assert data_of(await send({"query": trusted}))["getUserDetails"]["id"] == user_id
        other = unique_details()
        assert codes(await send({"extensions": persisted(other)})) == ["PERSISTED_QUERY_NOT_FOUND"]
        assert codes(await send({"query": other})) == ["FORBIDDEN"]
        # Nothing registers: the hash of the other document stays unknown.
        assert codes(await send({"query": other, "extensions": persisted(other)})) == ["FORBIDDEN"]
        assert codes(await send({"extensions": persisted(other)})) == ["PERSISTED_QUERY_NOT_FOUND"]


async def test_the_bench_reads_the_cached_answer_by_persisted_get(
    gateway: LiveGateway, services: Services, store: redis.Redis
) -> None:
    """`make bench`'s persisted-GET phase (bench/run.py) reads the same cached answer as its
    POST phase."""
    user_id, token = new_user(services.users)
    query = unique_details()
    with httpx.Client(timeout=10) as client:
        url = await asyncio.to_thread(
            persisted_get_url, client, f"{gateway.url}/graphql", query, token
        )
    response = await gateway.http.get(url, headers=bearer(token, **PREFLIGHT))
    assert data_of(response.json())["getUserDetails"]["id"] == user_id
    by_post = await post(gateway, {"query": query}, bearer(token))
    assert by_post.json() == response.json()
    assert len(await answers(store, user_id)) == 1


async def test_refusals_are_counted_under_the_graphql_route(gateway: LiveGateway) -> None:
    refused = await post(gateway, {"query": "{ __typename }"}, {"accept": "text/csv"})
    assert refused.status_code == 406
    metrics = (await gateway.http.get("/metrics")).text
    assert 'method="POST",route="/graphql",service="graphql_gateway",status="406"' in metrics


async def test_a_browser_on_an_allowed_origin_may_send_apollos_headers(
    gateway: LiveGateway,
) -> None:
    origin = "https://shop.example"
    settings = gateway.app.state.gateway.settings.model_copy(update={"cors_origins": origin})
    async with running_gateway(settings) as cors:
        preflight = await cors.http.options(
            "/graphql",
            headers={
                "origin": origin,
                "access-control-request-method": "GET",
                "access-control-request-headers": "apollo-require-preflight,content-type",
            },
        )
    assert preflight.status_code == 200, preflight.text
    allowed = preflight.headers["access-control-allow-headers"].lower()
    assert "apollo-require-preflight" in allowed
