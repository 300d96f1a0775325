"""Error mapping of the gateway: service answers -> contract errors -> GraphQL errors; and the
resolvers' guarantees (token checked before any call, crashes masked), with stub services."""

from __future__ import annotations

from typing import Any

import fakeredis
import httpx
import orjson
import pytest
from graphql import GraphQLError

from graphql_gateway.auth import authenticate
from graphql_gateway.cache import GatewayCache
from graphql_gateway.clients import ServiceClient, error_from_response
from graphql_gateway.limits import ConnectionSlots, UserLimits
from graphql_gateway.schema import schema
from graphql_gateway.schema.context import Gateway, GatewayContext
from graphql_gateway.schema.errors import to_client_error
from graphql_gateway.settings import GatewaySettings
from graphql_gateway.subscriptions import SubscriptionHub
from shared.auth import issue_token
from shared.errors import (
    BadUserInput,
    Conflict,
    ErrorCode,
    InternalError,
    NotFound,
    ServiceUnavailable,
    Unauthenticated,
)
from shared.logging import correlation_scope

SECRET = "unit-test-secret-" + "s" * 32


def body(code: str, message: str) -> bytes:
    return orjson.dumps({"error": {"code": code, "message": message}})


@pytest.mark.parametrize(
    ("status", "content", "expected", "message"),
    [
        (409, body("CONFLICT", "That email is taken."), Conflict, "That email is taken."),
        (422, body("BAD_USER_INPUT", "email: not valid."), BadUserInput, "email: not valid."),
        (401, body("UNAUTHENTICATED", "Log in again."), Unauthenticated, "Log in again."),
        (503, b"<html>bad gateway</html>", ServiceUnavailable, None),
        (500, b"", ServiceUnavailable, None),
        (502, orjson.dumps({"detail": "x"}), ServiceUnavailable, None),
        (500, body("INTERNAL_SERVER_ERROR", "Boom."), InternalError, "Boom."),
        (404, b"", NotFound, NotFound.default_message),
        (418, b"", InternalError, InternalError.default_message),
        (400, body("NO_SUCH_CODE", "Strange."), InternalError, "Strange."),
    ],
)
def test_service_answers_map_to_contract_errors(
    status: int, content: bytes, expected: type, message: str | None
) -> None:
    error = error_from_response("user service", status, content)
    assert type(error) is expected
    assert error.message == (message or "The user service is unavailable; try again shortly.")


def test_app_error_becomes_its_code() -> None:
    located = GraphQLError("x", path=["login"], original_error=Conflict("That email is taken."))
    mapped = to_client_error(located)
    assert mapped.message == "That email is taken."
    assert mapped.extensions == {"code": "CONFLICT"}
    assert mapped.path == ["login"]


def test_unexpected_exception_is_masked() -> None:
    located = GraphQLError(
        "connection to mongodb://admin:hunter2@db failed",
        path=["getUserDetails"],
        original_error=RuntimeError("connection to mongodb://admin:hunter2@db failed"),
    )
    mapped = to_client_error(located)
    assert mapped.message == "Something went wrong on our side."
    assert mapped.extensions == {"code": ErrorCode.INTERNAL_SERVER_ERROR.value}


def test_validation_errors_stay_graphql_errors() -> None:
    validation = GraphQLError("Cannot query field 'nope' on type 'Query'.")
    assert to_client_error(validation) is validation


# --- resolvers with stub services ---------------------------------------------------------


class StubUsers:
    def __init__(self, answer: Any) -> None:
        self.answer = answer
        self.calls = 0

    async def me(self, credentials: Any) -> bytes:
        self.calls += 1
        if isinstance(self.answer, Exception):
            raise self.answer
        return orjson.dumps(self.answer)

    async def purchases(self, credentials: Any, first: int) -> bytes:
        self.calls += 1
        self.asked_first = first
        return orjson.dumps(self.answer["purchase_history"][:first])


class StubClients:
    def __init__(self, users: StubUsers) -> None:
        self.users = users


def context_for(users: StubUsers, authorization: str | None) -> GatewayContext:
    settings = GatewaySettings(jwt_secret=SECRET)
    cache = GatewayCache(fakeredis.FakeAsyncRedis(), ttl_seconds=60, retry_after_seconds=5)
    gateway = Gateway(
        settings=settings,
        clients=StubClients(users),  # type: ignore[arg-type]
        cache=cache,
        hub=SubscriptionHub(max_queued=10),
        limits=UserLimits.from_settings(settings),
        connections=ConnectionSlots(per_user=1),
    )
    return GatewayContext(gateway=gateway, authorization=authorization)


def valid_token(user_id: str = "u-1") -> str:
    return issue_token(
        user_id=user_id,
        email="ada@example.com",
        roles=["customer"],
        secret=SECRET,
        issuer="fleet",
        ttl_seconds=600,
    )


USER = {
    "id": "u-1",
    "name": "Ada",
    "email": "ada@example.com",
    "preferences": ["order_updates"],
    "order_status": "Placed",
    "orders": [{"productId": 7, "title": "Tea", "category": "food", "price": 3.5}],
    "purchase_history": [
        {
            "orderId": "o-1",
            "products": [{"productId": "7", "title": "Tea", "category": "food", "price": None}],
            "purchaseDate": "2025-01-02T03:04:05+02:00",
        }
    ],
}


async def run(query: str, context: GatewayContext) -> Any:
    return await schema.execute(query, context_value=context)


async def test_user_details_are_read_and_timestamps_are_utc() -> None:
    users = StubUsers(USER)
    result = await run(
        "{ getUserDetails { id order_status orders { productId price }"
        " purchase_history { purchaseDate products { price } } } }",
        context_for(users, f"Bearer {valid_token()}"),
    )
    assert result.errors is None
    details = result.data["getUserDetails"]
    assert details["orders"] == [{"productId": "7", "price": 3.5}]
    assert details["purchase_history"][0]["purchaseDate"] == "2025-01-02T01:04:05+00:00"
    assert users.asked_first == 20  # purchase_history(first: Int = 20)


@pytest.mark.parametrize("authorization", [None, "", "Bearer ", "Bearer nope", "Basic abc"])
async def test_no_valid_token_no_downstream_call(authorization: str | None) -> None:
    users = StubUsers(USER)
    result = await run("{ getUserDetails { id } }", context_for(users, authorization))
    assert result.data is None
    assert [e.extensions for e in result.errors] == [{"code": "UNAUTHENTICATED"}]
    assert users.calls == 0


async def test_bare_token_is_accepted() -> None:
    result = await run("{ getUserDetails { id } }", context_for(StubUsers(USER), valid_token()))
    assert result.errors is None


@pytest.mark.parametrize(
    "answer",
    [
        RuntimeError("connection to mongodb://admin:hunter2@db failed"),
        {**USER, "preferences": ["hunter2"]},
        {"unexpected": "shape"},
    ],
    ids=["crash", "unknown-enum-value", "bad-shape"],
)
async def test_crashes_are_masked(answer: Any) -> None:
    result = await run(
        "{ getUserDetails { id preferences } }",
        context_for(StubUsers(answer), f"Bearer {valid_token()}"),
    )
    assert [(e.message, e.extensions) for e in result.errors] == [
        ("Something went wrong on our side.", {"code": "INTERNAL_SERVER_ERROR"})
    ]
    assert "hunter2" not in str(result.errors[0].formatted)


async def test_service_error_passes_through() -> None:
    result = await run(
        "{ getUserDetails { id } }",
        context_for(StubUsers(NotFound("That user does not exist.")), valid_token()),
    )
    assert [(e.message, e.extensions) for e in result.errors] == [
        ("That user does not exist.", {"code": "NOT_FOUND"})
    ]


# --- the HTTP client (mock transport, no I/O) ---------------------------------------------


def service_client(handler: Any) -> ServiceClient:
    settings = GatewaySettings(jwt_secret=SECRET)
    return ServiceClient("user service", "http://users", settings, httpx.MockTransport(handler))


@pytest.mark.parametrize(
    "failure", [httpx.ReadTimeout("slow"), httpx.ConnectError("refused")], ids=["timeout", "down"]
)
async def test_no_answer_is_service_unavailable(failure: Exception) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise failure

    client = service_client(handler)
    with pytest.raises(ServiceUnavailable, match="The user service is unavailable"):
        await client.call("GET", "/users/me")
    await client.aclose()


async def test_token_and_correlation_id_are_forwarded() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, content=b"{}")

    client = service_client(handler)
    token = valid_token()
    credentials = authenticate(token, GatewaySettings(jwt_secret=SECRET))
    with correlation_scope("corr-123"):
        assert await client.call("GET", "/users/me", credentials=credentials) == b"{}"
    await client.aclose()
    assert seen[0].headers["authorization"] == f"Bearer {token}"
    assert seen[0].headers["x-correlation-id"] == "corr-123"
