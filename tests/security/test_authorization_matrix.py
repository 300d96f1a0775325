"""The authorization matrix: every service HTTP endpoint and every GraphQL field, called with no
token, a forged token, an expired token, another user's token, the owner's (a customer's) and an
admin's, must answer what the matrix says.

The endpoints are read from each app's routes and the fields from the schema by introspection:
an endpoint or field without a row here fails `test_the_matrix_covers_*`. The services are
called directly, as a caller inside the network would; they verify tokens themselves.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import websockets
from websockets.typing import Subprotocol

from graphql_gateway.subscriptions import Channel
from notification_service import tracking
from scheduler_service import domain as scheduler_domain
from shared.events import NotificationCreated, OrderStatusChanged
from shared.events.models import ProductLine
from shared.links import LinkPurpose, LinkSigner
from tests.fixtures.parts import TEST_JWT_SECRET, eventually
from tests.security.conftest import (
    ALL_KINDS,
    BAD_TOKENS,
    PASSWORD,
    Account,
    Kind,
    World,
    register,
    unique_email,
    verification_token,
)
from tests.security.endpoints import WEBSOCKET, endpoints

pytestmark = pytest.mark.integration

WS_PROTOCOL = Subprotocol("graphql-transport-ws")
WS_TIMEOUT_SECONDS = 10.0
WS_REFUSED = 4403


# --- expectations -------------------------------------------------------------------------


def public(status: int) -> dict[Kind, int]:
    """Anyone, with any token or none (the token is not looked at)."""
    return dict.fromkeys(ALL_KINDS, status)


def authed(ok: int, *, other: int | None = None, admin: int | None = None) -> dict[Kind, int]:
    """A valid token needed; the caller acts on their own data."""
    return {
        **dict.fromkeys(BAD_TOKENS, 401),
        Kind.OTHER: ok if other is None else other,
        Kind.OWNER: ok,
        Kind.ADMIN: ok if admin is None else admin,
    }


def admin_only(ok: int) -> dict[Kind, int]:
    return {**dict.fromkeys(BAD_TOKENS, 401), Kind.OTHER: 403, Kind.OWNER: 403, Kind.ADMIN: ok}


@dataclass(frozen=True)
class Call:
    path: str
    json: Any = None
    params: dict[str, str] | None = None
    # Instead of the kind's own token: calls that end sessions or change a password use a
    # session or an account of their own, so the world's tokens keep working.
    headers: dict[str, str] | None = None
    form: dict[str, str] | None = None


Build = Callable[[World, Kind], Awaitable[Call]]


def fixed(path: str, body: Any = None, params: dict[str, str] | None = None) -> Build:
    async def build(world: World, kind: Kind) -> Call:
        return Call(path, body, params)

    return build


async def _register_body(world: World, kind: Kind) -> Call:
    return Call("/users", {"name": "New User", "email": unique_email("new"), "password": PASSWORD})


async def _login_body(world: World, kind: Kind) -> Call:
    return Call("/auth/login", {"email": world.owner.email, "password": PASSWORD})


async def _mark_owner_notification(world: World, kind: Kind) -> Call:
    return Call(f"/notifications/{await world.owner_notification()}/read")


LINKS = LinkSigner(TEST_JWT_SECRET)
NEW_PASSWORD = "another matrix password 2"


async def _owner_pixel(world: World, kind: Kind) -> Call:
    token = tracking.sign(LINKS, await world.owner_notification(), world.owner.user_id, 600)
    return Call(f"/track/{token}.gif")


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def fresh_account(world: World) -> Account:
    """A customer of the call's own."""
    return await register(world.clients["user_service"], unique_email("fresh"))


async def fresh_session(world: World, kind: Kind) -> dict[str, str] | None:
    """A new session of the kind's account (to end it); bad tokens stay as they are."""
    account = world.account(kind)
    if account is None:
        return None
    login = await world.clients["user_service"].post(
        "/auth/login", json={"email": account.email, "password": PASSWORD}
    )
    return _bearer(login.json()["token"])


async def throwaway(world: World, kind: Kind) -> tuple[Account | None, dict[str, str] | None]:
    """For a password change: an account of the call's own (acting on oneself, a customer and
    an admin are alike); bad tokens stay as they are."""
    if world.account(kind) is None:
        return None, None
    account = await fresh_account(world)
    return account, _bearer(account.token)


async def verify_token_of_fresh_user(world: World) -> str:
    account = await fresh_account(world)
    user = await world.apps["user_service"].state.service.repository.by_id(account.user_id)
    return verification_token(world.apps["user_service"], user)


async def reset_token_of_fresh_user(world: World) -> str:
    account = await fresh_account(world)
    users = world.clients["user_service"]
    await users.post("/auth/password-reset-requests", json={"email": account.email})
    user = await world.apps["user_service"].state.service.repository.by_id(account.user_id)
    return LINKS.sign(
        LinkPurpose.RESET_PASSWORD, account.user_id, ttl_seconds=600, token_id=user["reset_jti"]
    )


async def _refresh_body(world: World, kind: Kind) -> Call:
    return Call("/auth/refresh", {"refreshToken": (await fresh_account(world)).refresh_token})


async def _logout(world: World, kind: Kind) -> Call:
    return Call("/auth/logout", headers=await fresh_session(world, kind))


async def _verify_body(world: World, kind: Kind) -> Call:
    return Call("/auth/verify-email", {"token": await verify_token_of_fresh_user(world)})


async def _reset_body(world: World, kind: Kind) -> Call:
    token = await reset_token_of_fresh_user(world)
    return Call("/auth/password-reset", {"token": token, "newPassword": NEW_PASSWORD})


async def _change_password(world: World, kind: Kind) -> Call:
    _, headers = await throwaway(world, kind)
    body = {"currentPassword": PASSWORD, "newPassword": NEW_PASSWORD}
    return Call("/users/me/password", body, headers=headers)


async def _admin_grant(world: World, kind: Kind) -> Call:
    return Call(f"/admin/admins/{(await fresh_account(world)).email}")


async def _owner_order_status(world: World, kind: Kind) -> Call:
    order_id = await world.place_owner_order()
    target = "Shipped" if kind is Kind.ADMIN else "Cancelled"
    return Call(f"/orders/{order_id}/status", {"status": target})


def _owner_unsubscribe(prefix: str) -> Build:
    async def build(world: World, kind: Kind) -> Call:
        token = scheduler_domain.unsubscribe_token(TEST_JWT_SECRET, world.owner.user_id, 600)
        return Call(f"{prefix}/{token}")

    return build


async def _verify_page_post(world: World, kind: Kind) -> Call:
    return Call(f"/verify-email/{await verify_token_of_fresh_user(world)}")


async def _reset_page_post(world: World, kind: Kind) -> Call:
    token = await reset_token_of_fresh_user(world)
    return Call(f"/reset-password/{token}", form={"password": NEW_PASSWORD})


@dataclass(frozen=True)
class Row:
    expect: dict[Kind, int]
    build: Build
    # Callers (besides the owner) whose successful answer may name the owner: a public login
    # with the owner's password, an admin acting on the owner's order.
    may_name_owner: frozenset[Kind] = frozenset()


PRODUCTS = {"products": [{"productId": "3", "quantity": 2}]}
OPS: dict[tuple[str, str], Row] = {
    ("GET", "/health"): Row(public(200), fixed("/health")),
    ("GET", "/ready"): Row(public(200), fixed("/ready")),
    ("GET", "/metrics"): Row(public(200), fixed("/metrics")),
}
# FastAPI's own pages (services are only reachable inside the network; the gateway has none).
DOCS: dict[tuple[str, str], Row] = {
    ("GET", "/openapi.json"): Row(public(200), fixed("/openapi.json")),
    ("GET", "/docs"): Row(public(200), fixed("/docs")),
    ("GET", "/docs/oauth2-redirect"): Row(public(200), fixed("/docs/oauth2-redirect")),
    ("GET", "/redoc"): Row(public(200), fixed("/redoc")),
}

SERVICE_MATRIX: dict[str, dict[tuple[str, str], Row]] = {
    "user_service": {
        ("POST", "/users"): Row(public(201), _register_body),
        ("POST", "/auth/login"): Row(public(200), _login_body, frozenset(ALL_KINDS)),
        ("GET", "/users/me"): Row(authed(200), fixed("/users/me")),
        ("GET", "/users/me/purchases"): Row(authed(200), fixed("/users/me/purchases")),
        ("PUT", "/users/me/preferences"): Row(
            authed(200), fixed("/users/me/preferences", {"preferences": ["order_updates"]})
        ),
        # The refresh token, the emailed link's token: the body is the credential.
        ("POST", "/auth/refresh"): Row(public(200), _refresh_body),
        ("POST", "/auth/verify-email"): Row(public(200), _verify_body),
        ("POST", "/auth/password-reset-requests"): Row(
            public(200), fixed("/auth/password-reset-requests", {"email": "nobody@example.com"})
        ),
        ("POST", "/auth/password-reset"): Row(public(200), _reset_body),
        ("POST", "/auth/logout"): Row(authed(200), _logout),
        ("PUT", "/users/me/password"): Row(authed(200), _change_password),
        ("POST", "/users/me/verification-requests"): Row(
            authed(200), fixed("/users/me/verification-requests")
        ),
        ("PUT", "/admin/admins/{email}"): Row(admin_only(200), _admin_grant),
        ("DELETE", "/admin/admins/{email}"): Row(admin_only(200), _admin_grant),
    },
    "notification_service": {
        ("GET", "/notifications"): Row(
            authed(200), fixed("/notifications", params={"unread_only": "false"})
        ),
        ("POST", "/notifications/{notification_id}/read"): Row(
            authed(200, other=404, admin=404), _mark_owner_notification
        ),
        # The signed token decides; any bearer token is ignored.
        ("GET", "/track/{token}.gif"): Row(public(200), _owner_pixel),
    },
    "order_service": {
        ("POST", "/orders"): Row(authed(201), fixed("/orders", PRODUCTS)),
        ("GET", "/orders"): Row(authed(200), fixed("/orders")),
        ("POST", "/orders/{order_id}/status"): Row(
            authed(200, other=404), _owner_order_status, frozenset({Kind.ADMIN})
        ),
        # The catalog is public: the same for everyone, nothing about a user.
        ("GET", "/products"): Row(public(200), fixed("/products")),
        ("GET", "/products/{product_id}"): Row(public(200), fixed("/products/3")),
    },
    "recommendation_service": {
        ("POST", "/recommendations/requests"): Row(authed(202), fixed("/recommendations/requests")),
        ("GET", "/recommendations"): Row(authed(200), fixed("/recommendations")),
    },
    "scheduler_service": {
        ("PUT", "/subscriptions/me"): Row(authed(200), fixed("/subscriptions/me")),
        ("DELETE", "/subscriptions/me"): Row(authed(200), fixed("/subscriptions/me")),
        # The signed link decides (it names one user and can only unsubscribe them); only a
        # POST acts (the gateway's page, or RFC 8058 one-click).
        ("POST", "/subscriptions/unsubscribe/{token}"): Row(
            public(200), _owner_unsubscribe("/subscriptions/unsubscribe")
        ),
    },
    "kafka_admin_service": {
        ("GET", "/api/topics"): Row(admin_only(200), fixed("/api/topics")),
        ("GET", "/api/consumer-groups"): Row(admin_only(200), fixed("/api/consumer-groups")),
        ("GET", "/api/dlq"): Row(admin_only(200), fixed("/api/dlq")),
        ("POST", "/api/dlq/{topic}/replay"): Row(
            admin_only(200), fixed("/api/dlq/user.registered.dlq/replay")
        ),
    },
}
SERVICE_CASES = [
    (service, method, path, kind)
    for service, rows in SERVICE_MATRIX.items()
    for (method, path), row in rows.items()
    for kind in ALL_KINDS
]


def row_for(service: str, method: str, path: str) -> Row:
    own = SERVICE_MATRIX[service].get((method, path))
    return own or OPS.get((method, path)) or DOCS[(method, path)]


def assert_answer(response: httpx.Response, row: Row, kind: Kind, world: World) -> None:
    expected = row.expect[kind]
    assert response.status_code == expected, f"{kind}: {response.status_code} {response.text}"
    assert "Traceback" not in response.text
    if expected == 401:
        assert response.json()["error"]["code"] == "UNAUTHENTICATED"
    elif expected == 403:
        assert response.json()["error"]["code"] == "FORBIDDEN"
    elif expected == 404:
        assert response.json()["error"]["code"] == "NOT_FOUND"
    elif kind in (Kind.OTHER, Kind.ADMIN) and kind not in row.may_name_owner:
        assert world.owner.user_id not in response.text, f"{kind} saw the owner's data"
        assert world.owner.email not in response.text, f"{kind} saw the owner's data"


# --- services -----------------------------------------------------------------------------


@pytest.mark.parametrize("service", list(SERVICE_MATRIX))
async def test_the_matrix_covers_every_endpoint(world: World, service: str) -> None:
    served = endpoints(world.apps[service])
    listed = set(SERVICE_MATRIX[service]) | set(OPS) | set(DOCS)
    assert served - listed == set(), f"{service} serves endpoints the matrix does not list"
    # Nothing takes a user id from the caller: the token names the user.
    assert not [p for _, p in served if "{user" in p.lower()]


@pytest.mark.parametrize(
    ("service", "method", "path", "kind"),
    SERVICE_CASES,
    ids=[f"{s}:{m} {p}:{k.name}" for s, m, p, k in SERVICE_CASES],
)
async def test_service_endpoint(
    world: World, service: str, method: str, path: str, kind: Kind
) -> None:
    if (method, path) not in endpoints(world.apps[service]):
        pytest.skip(f"{service} does not serve {method} {path} yet")
    row = row_for(service, method, path)
    call = await row.build(world, kind)
    headers = call.headers if call.headers is not None else world.headers(kind)
    response = await world.clients[service].request(
        method, call.path, json=call.json, params=call.params, headers=headers
    )
    assert_answer(response, row, kind, world)


@pytest.mark.parametrize("service", list(SERVICE_MATRIX))
@pytest.mark.parametrize("path", ["/health", "/ready", "/metrics"])
async def test_ops_endpoints_are_public(world: World, service: str, path: str) -> None:
    response = await world.clients[service].get(path)
    assert response.status_code == 200, response.text


async def test_forged_links_do_nothing(world: World) -> None:
    # A user of this test's own, whose welcome notification no other test marks read.
    account = await register(world.clients["user_service"], unique_email("forged"))
    notifications = world.clients["notification_service"]

    async def listed() -> list[dict[str, Any]]:
        response = await notifications.get(
            "/notifications",
            params={"unread_only": "false"},
            headers={"authorization": f"Bearer {account.token}"},
        )
        return list(response.json()) if response.status_code == 200 else []

    [welcome] = await eventually(listed, what="the user's welcome notification")
    assert welcome["read"] is False
    forged_links = LinkSigner("forged-" + uuid.uuid4().hex * 2)
    forged = tracking.sign(forged_links, welcome["id"], account.user_id, 600)
    pixel = await notifications.get(f"/track/{forged}.gif")
    assert pixel.status_code == 200  # the pixel is always served ...
    # ... but a forged token marks nothing read,
    assert [n["read"] for n in await listed()] == [False]
    # where the genuine one does.
    expired = tracking.sign(LINKS, welcome["id"], account.user_id, -1)
    assert (await notifications.get(f"/track/{expired}.gif")).status_code == 200
    assert [n["read"] for n in await listed()] == [False]  # an expired one neither,
    genuine = tracking.sign(LINKS, welcome["id"], account.user_id, 600)
    assert (await notifications.get(f"/track/{genuine}.gif")).status_code == 200
    assert [n["read"] for n in await listed()] == [True]
    forged_link = scheduler_domain.unsubscribe_token("forged-" + uuid.uuid4().hex * 2, "u1", 600)
    refused = await world.clients["scheduler_service"].post(
        f"/subscriptions/unsubscribe/{forged_link}"
    )
    assert refused.status_code == 404
    assert refused.json()["error"]["code"] == "NOT_FOUND"


# --- the gateway's HTTP routes ------------------------------------------------------------

GRAPHQL_ROUTES = {("GET", "/graphql"), ("POST", "/graphql"), (WEBSOCKET, "/graphql")}
GATEWAY_MATRIX: dict[tuple[str, str], Row] = {
    **OPS,
    ("GET", "/track/{token}.gif"): Row(public(200), _owner_pixel),
    # Pages of emailed links: a GET only shows the page; the POST acts (the token decides).
    ("GET", "/unsubscribe/{token}"): Row(public(200), _owner_unsubscribe("/unsubscribe")),
    ("POST", "/unsubscribe/{token}"): Row(public(200), _owner_unsubscribe("/unsubscribe")),
    ("GET", "/verify-email/{token}"): Row(public(200), fixed("/verify-email/anything")),
    ("POST", "/verify-email/{token}"): Row(public(200), _verify_page_post),
    ("GET", "/reset-password/{token}"): Row(public(200), fixed("/reset-password/anything")),
    ("POST", "/reset-password/{token}"): Row(public(200), _reset_page_post),
    # GraphiQL's scripts (when GRAPHIQL_ENABLED): only the files its page names.
    ("GET", "/graphiql/static/{asset:path}"): Row(public(404), fixed("/graphiql/static/nope.js")),
}


async def test_the_matrix_covers_every_gateway_route(world: World) -> None:
    served = endpoints(world.gateway_app)
    assert served - set(GATEWAY_MATRIX) - GRAPHQL_ROUTES == set()


GATEWAY_CASES = [(m, p, k) for (m, p) in GATEWAY_MATRIX for k in ALL_KINDS]


@pytest.mark.parametrize(
    ("method", "path", "kind"),
    GATEWAY_CASES,
    ids=[f"{m} {p}:{k.name}" for m, p, k in GATEWAY_CASES],
)
async def test_gateway_route(world: World, method: str, path: str, kind: Kind) -> None:
    if (method, path) not in endpoints(world.gateway_app):
        pytest.skip(f"the gateway does not serve {method} {path} here")
    row = GATEWAY_MATRIX[(method, path)]
    call = await row.build(world, kind)
    async with httpx.AsyncClient(base_url=world.gateway_url) as client:
        response = await client.request(
            method, call.path, headers=world.headers(kind), data=call.form
        )
    assert response.status_code == row.expect[kind], response.text
    assert "Traceback" not in response.text


# --- GraphQL fields -----------------------------------------------------------------------

OK = "ok"
UNAUTH = "UNAUTHENTICATED"


def g_public() -> dict[Kind, str]:
    return dict.fromkeys(ALL_KINDS, OK)


def g_authed(*, other: str = OK, admin: str = OK) -> dict[Kind, str]:
    return {
        **dict.fromkeys(BAD_TOKENS, UNAUTH),
        Kind.OTHER: other,
        Kind.OWNER: OK,
        Kind.ADMIN: admin,
    }


# The query, its variables and (for calls that end sessions or change a password) the
# headers to send instead of the kind's own.
Built = tuple[str, dict[str, Any]] | tuple[str, dict[str, Any], dict[str, str] | None]
Operation = Callable[[World, Kind], Awaitable[Built]]


def op(query: str, variables: dict[str, Any] | None = None) -> Operation:
    async def build(world: World, kind: Kind) -> Built:
        return query, dict(variables or {})

    return build


async def _refresh_op(world: World, kind: Kind) -> Built:
    account = await fresh_account(world)
    return (
        "mutation($r: String!) { refreshSession(refreshToken: $r) { token refreshToken } }",
        {"r": account.refresh_token},
    )


async def _logout_op(world: World, kind: Kind) -> Built:
    return "mutation { logout }", {}, await fresh_session(world, kind)


async def _verify_op(world: World, kind: Kind) -> Built:
    return (
        "mutation($t: String!) { verifyEmail(token: $t) { id emailVerified } }",
        {"t": await verify_token_of_fresh_user(world)},
    )


async def _reset_op(world: World, kind: Kind) -> Built:
    return (
        "mutation($t: String!, $p: String!) {"
        " resetPassword(token: $t, newPassword: $p) { token refreshToken } }",
        {"t": await reset_token_of_fresh_user(world), "p": NEW_PASSWORD},
    )


async def _change_password_op(world: World, kind: Kind) -> Built:
    _, headers = await throwaway(world, kind)
    return (
        "mutation($c: String!, $p: String!) {"
        " changePassword(currentPassword: $c, newPassword: $p) { token refreshToken } }",
        {"c": PASSWORD, "p": NEW_PASSWORD},
        headers,
    )


async def _register_op(world: World, kind: Kind) -> tuple[str, dict[str, Any]]:
    return (
        'mutation($e: String!, $p: String!) { registerUser(name: "N", email: $e, password: $p)'
        " { token user { id } } }",
        {"e": unique_email("gql"), "p": PASSWORD},
    )


async def _login_op(world: World, kind: Kind) -> tuple[str, dict[str, Any]]:
    return (
        "mutation($e: String!, $p: String!) {"
        " login(email: $e, password: $p) { token user { id } } }",
        {"e": world.owner.email, "p": PASSWORD},
    )


async def _status_op(world: World, kind: Kind) -> tuple[str, dict[str, Any]]:
    order_id = await world.place_owner_order()
    target = "Shipped" if kind is Kind.ADMIN else "Cancelled"
    return (
        "mutation($o: ID!, $s: OrderStatus!) { updateOrderStatus(orderId: $o, order_status: $s)"
        " { id userId status } }",
        {"o": order_id, "s": target},
    )


async def _mark_read_op(world: World, kind: Kind) -> tuple[str, dict[str, Any]]:
    return (
        "mutation($i: ID!) { markNotificationRead(id: $i) { id userId read } }",
        {"i": await world.owner_notification()},
    )


@dataclass(frozen=True)
class FieldRow:
    expect: dict[Kind, str]
    build: Operation
    may_name_owner: frozenset[Kind] = frozenset()


GRAPHQL_MATRIX: dict[str, FieldRow] = {
    "getUserDetails": FieldRow(g_authed(), op("{ getUserDetails { id email } }")),
    "getUserNotifications": FieldRow(
        g_authed(), op("{ getUserNotifications(unreadOnly: false) { id userId } }")
    ),
    "orders": FieldRow(g_authed(), op("{ orders { id userId } }")),
    "recommendations": FieldRow(g_authed(), op("{ recommendations { productId } }")),
    "productRecommendation": FieldRow(g_authed(), op("{ productRecommendation }")),
    "registerUser": FieldRow(g_public(), _register_op),
    "login": FieldRow(g_public(), _login_op, frozenset(ALL_KINDS)),
    "updateUserPreferences": FieldRow(
        g_authed(),
        op("mutation { updateUserPreferences(preferences: [order_updates]) { id } }"),
    ),
    "placeOrder": FieldRow(
        g_authed(),
        op('mutation { placeOrder(products: [{productId: "3", quantity: 2}]) { id userId } }'),
    ),
    "products": FieldRow(g_public(), op("{ products(first: 2) { items { productId } } }")),
    "product": FieldRow(g_public(), op('{ product(productId: "3") { productId } }')),
    "updateOrderStatus": FieldRow(g_authed(other="NOT_FOUND"), _status_op, frozenset({Kind.ADMIN})),
    "taskSchedular": FieldRow(g_authed(), op("mutation { taskSchedular }")),
    "cancelTaskSchedular": FieldRow(g_authed(), op("mutation { cancelTaskSchedular }")),
    "markNotificationRead": FieldRow(g_authed(other="NOT_FOUND", admin="NOT_FOUND"), _mark_read_op),
    # The refresh token or the emailed link's token is the credential: no access token needed.
    "refreshSession": FieldRow(g_public(), _refresh_op),
    "verifyEmail": FieldRow(g_public(), _verify_op),
    "requestPasswordReset": FieldRow(
        g_public(),
        op(
            "mutation($e: String!) { requestPasswordReset(email: $e) }",
            {"e": "nobody@example.com"},
        ),
    ),
    "resetPassword": FieldRow(g_public(), _reset_op),
    "logout": FieldRow(g_authed(), _logout_op),
    "resendVerification": FieldRow(g_authed(), op("mutation { resendVerification }")),
    "changePassword": FieldRow(g_authed(), _change_password_op),
}
SUBSCRIPTIONS: dict[str, tuple[Channel, str]] = {
    "orderUpdates": (Channel.ORDER_UPDATES, "subscription { orderUpdates { id userId } }"),
    "notificationAdded": (
        Channel.NOTIFICATIONS,
        "subscription { notificationAdded { id userId } }",
    ),
}

INTROSPECT_FIELDS = """{ __schema {
  queryType { fields { name } }
  mutationType { fields { name } }
  subscriptionType { fields { name } }
} }"""


async def graphql(
    world: World,
    kind: Kind,
    query: str,
    variables: dict[str, Any],
    headers: dict[str, str] | None = None,
) -> Any:
    async with httpx.AsyncClient(base_url=world.gateway_url) as client:
        response = await client.post(
            "/graphql",
            json={"query": query, "variables": variables},
            headers=headers if headers is not None else world.headers(kind),
        )
    assert response.status_code == 200, response.text
    assert "Traceback" not in response.text
    return response


async def test_the_matrix_covers_every_graphql_field(world: World) -> None:
    body = (await graphql(world, Kind.NONE, INTROSPECT_FIELDS, {})).json()["data"]["__schema"]
    fields = {
        kind: {f["name"] for f in (body[f"{kind}Type"] or {}).get("fields", [])}
        for kind in ("query", "mutation", "subscription")
    }
    assert fields["query"] | fields["mutation"] == set(GRAPHQL_MATRIX)
    assert fields["subscription"] == set(SUBSCRIPTIONS)


GRAPHQL_CASES = [(name, kind) for name in GRAPHQL_MATRIX for kind in ALL_KINDS]


@pytest.mark.parametrize(
    ("field", "kind"), GRAPHQL_CASES, ids=[f"{f}:{k.name}" for f, k in GRAPHQL_CASES]
)
async def test_graphql_field(world: World, field: str, kind: Kind) -> None:
    row = GRAPHQL_MATRIX[field]
    built = await row.build(world, kind)
    query, variables = built[0], built[1]
    response = await graphql(world, kind, query, variables, built[2] if len(built) == 3 else None)
    body = response.json()
    expected = row.expect[kind]
    if expected == OK:
        assert "errors" not in body, body
        assert body["data"][field] is not None
        if kind in (Kind.OTHER, Kind.ADMIN) and kind not in row.may_name_owner:
            assert world.owner.user_id not in response.text, f"{kind} saw the owner's data"
    else:
        assert [e["extensions"]["code"] for e in body["errors"]] == [expected], body
        assert not (body.get("data") or {}).get(field)


@pytest.mark.parametrize("field", list(SUBSCRIPTIONS))
@pytest.mark.parametrize("kind", BAD_TOKENS, ids=[k.name for k in BAD_TOKENS])
async def test_subscription_refused_without_a_valid_token(
    world: World, field: str, kind: Kind
) -> None:
    token = world.token(kind)
    payload = {"Authorization": f"Bearer {token}"} if token else {}
    url = world.gateway_url.replace("http://", "ws://", 1) + "/graphql"
    async with websockets.connect(url, subprotocols=[WS_PROTOCOL]) as connection:
        await connection.send(json.dumps({"type": "connection_init", "payload": payload}))
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await asyncio.wait_for(connection.recv(), WS_TIMEOUT_SECONDS)
    received = closed.value.rcvd
    assert received is not None
    assert received.code == WS_REFUSED
    assert received.reason.startswith("UNAUTHENTICATED: ")


def _event_for(channel: Channel, user_id: str) -> Any:
    now = datetime.now(UTC)
    if channel is Channel.ORDER_UPDATES:
        return OrderStatusChanged(
            order_id=uuid.uuid4().hex,
            user_id=user_id,
            previous_status="Placed",
            status="Shipped",
            products=[ProductLine(productId="7", title="Tea", category="food", price=3.5)],
            created_at=now,
            changed_at=now,
        )
    return NotificationCreated(
        notification_id=uuid.uuid4().hex,
        user_id=user_id,
        type="order_update",
        content="Your order is Shipped.",
        sent_at=now,
    )


@pytest.mark.parametrize("field", list(SUBSCRIPTIONS))
@pytest.mark.parametrize("kind", [Kind.OTHER, Kind.OWNER, Kind.ADMIN], ids=lambda k: k.name)
async def test_subscription_serves_only_the_callers_own_items(
    world: World, field: str, kind: Kind
) -> None:
    """Subscribed, a caller is registered under their own user id only: an item for the owner
    reaches the owner's subscription and no one else's."""
    channel, query = SUBSCRIPTIONS[field]
    account = world.account(kind)
    assert account is not None
    hub = world.gateway_app.state.gateway.hub
    url = world.gateway_url.replace("http://", "ws://", 1) + "/graphql"
    payload = {"Authorization": f"Bearer {world.token(kind)}"}
    async with websockets.connect(url, subprotocols=[WS_PROTOCOL]) as connection:
        await connection.send(json.dumps({"type": "connection_init", "payload": payload}))
        ack = json.loads(await asyncio.wait_for(connection.recv(), WS_TIMEOUT_SECONDS))
        assert ack["type"] == "connection_ack", ack
        await connection.send(
            json.dumps({"id": "1", "type": "subscribe", "payload": {"query": query}})
        )
        # Items are handed out by user id: the subscription is found under the caller's own.
        await eventually(
            lambda: hub.publish(channel, account.user_id, _event_for(channel, account.user_id)),
            what="the subscription registered under the caller's id",
        )
        # Someone else's item, then the caller's own again: only the caller's two arrive.
        someone_else = world.other if kind is Kind.OWNER else world.owner
        hub.publish(channel, someone_else.user_id, _event_for(channel, someone_else.user_id))
        hub.publish(channel, account.user_id, _event_for(channel, account.user_id))
        for _ in range(2):
            message = json.loads(await asyncio.wait_for(connection.recv(), WS_TIMEOUT_SECONDS))
            assert message["type"] == "next", message
            assert message["payload"]["data"][field]["userId"] == account.user_id
