"""One rule refuses control characters in every text field (issue 13): at the gateway, any
string argument (names, titles, categories, ids, emails), literal or variable, holding a C0,
DEL or C1 character answers BAD_USER_INPUT before any resolver runs, so nothing is stored."""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from graphql_gateway.limits import schema_extensions
from graphql_gateway.schema import build_schema
from graphql_gateway.schema.context import GatewayContext
from graphql_gateway.settings import GatewaySettings
from shared.text import CONTROL_CHARACTERS_MESSAGE, has_control_characters
from tests.fixtures.parts import TEST_JWT_SECRET
from tests.security.conftest import PASSWORD, Kind, World, unique_email

pytestmark = pytest.mark.integration

PLACE = (
    """mutation($p: [ProductInput!]!) { placeOrder(products: $p) { id products { productId } } }"""
)
ORDERS = "{ orders { products { productId } } }"


async def gql(
    world: World, query: str, variables: dict[str, Any] | None = None, kind: Kind = Kind.OWNER
) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=world.gateway_url) as client:
        response = await client.post(
            "/graphql",
            json={"query": query, "variables": variables or {}},
            headers=world.headers(kind),
        )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def refused(body: dict[str, Any]) -> bool:
    errors = body.get("errors") or []
    return bool(errors) and all(
        e["message"] == CONTROL_CHARACTERS_MESSAGE and e["extensions"]["code"] == "BAD_USER_INPUT"
        for e in errors
    )


@pytest.mark.parametrize(
    "character", ["\x00", "\x07", "\t", "\n", "\r", "\x1b", "\x7f", "\x85", "\x9f"]
)
def test_the_rule_knows_every_control_character(character: str) -> None:
    assert has_control_characters(f"Lamp{character}")
    assert not has_control_characters("Lampe à poser, 40 cm, «design» 🙂")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("productId", "1\x00"),
        ("title", "Lamp\nInjected: header"),
        ("category", "home\x1b[31m"),
    ],
)
async def test_a_product_field_with_a_control_character_is_refused_and_not_stored(
    world: World, field: str, value: str
) -> None:
    product = {"productId": "7", "title": "Lamp", "category": "home", field: value}
    body = await gql(world, PLACE, {"p": [product]})
    assert refused(body), body
    assert body.get("data") is None
    listed = await gql(world, ORDERS)
    stored = [p["productId"] for order in listed["data"]["orders"] for p in order["products"]]
    assert not any(has_control_characters(item) for item in stored)


async def test_literals_are_checked_like_variables(world: World) -> None:
    # `\\u0000` is GraphQL's escape: the parsed string holds a NUL byte.
    literal = (
        'mutation { placeOrder(products: [{productId: "1\\u0000", title: "Lamp", '
        'category: "home"}]) { id } }'
    )
    assert refused(await gql(world, literal))
    mark = 'mutation { markNotificationRead(id: "abc\\u0085") { id } }'
    assert refused(await gql(world, mark))


async def test_anonymous_fields_are_checked_too(world: World) -> None:
    register = (
        "mutation($n: String!, $e: String!, $p: String!) "
        "{ registerUser(name: $n, email: $e, password: $p) { token } }"
    )
    email = unique_email("ctl")
    variables = {"n": "Eve\r\nBcc: all", "e": email, "p": PASSWORD}
    assert refused(await gql(world, register, variables, kind=Kind.NONE))
    login = "mutation($e: String!, $p: String!) { login(email: $e, password: $p) { token } }"
    assert refused(await gql(world, login, {"e": email, "p": PASSWORD + "\x00"}, Kind.NONE))
    # The same registration with a clean name goes through: the rule refused only the text.
    variables["n"] = "Eve"
    created = await gql(world, register, variables, kind=Kind.NONE)
    assert created["data"]["registerUser"]["token"], created


async def test_clean_text_with_unicode_is_served(world: World) -> None:
    product = {"productId": "8", "title": "Lampe à poser «design» 🙂", "category": "maison"}
    body = await gql(world, PLACE, {"p": [product]})
    assert "errors" not in body, body
    assert body["data"]["placeOrder"]["products"] == [{"productId": "8"}]


# --- fuzzing: any text with a control character, anywhere, is refused -------------------------

CONTROL = st.characters(codec=None, categories=["Cc"])
TEXT = st.text(max_size=20)
WITH_CONTROL = st.tuples(TEXT, CONTROL, TEXT).map("".join)
GATEWAY_SETTINGS = GatewaySettings(_env_file=None, jwt_secret=TEST_JWT_SECRET)
SCHEMA = build_schema(limits=schema_extensions(GATEWAY_SETTINGS))
TITLE_QUERY = (
    "mutation($t: String!) "
    '{ placeOrder(products: [{productId: "1", title: $t, category: "home"}]) { id } }'
)


def codes_of(query: str, variables: dict[str, Any] | None = None) -> list[str | None]:
    """The error codes of an operation run without a token (a resolver would answer
    UNAUTHENTICATED; the text rule answers before any runs)."""
    gateway = SimpleNamespace(settings=GATEWAY_SETTINGS)
    context = GatewayContext(gateway=gateway, authorization=None)  # type: ignore[arg-type]
    result = asyncio.run(SCHEMA.execute(query, variable_values=variables, context_value=context))
    return [(e.extensions or {}).get("code") for e in result.errors or []]


@settings(max_examples=60, deadline=None, database=None)
@given(text=WITH_CONTROL)
def test_fuzzed_text_with_a_control_character_is_refused_as_variable_and_literal(
    text: str,
) -> None:
    assert codes_of(TITLE_QUERY, {"t": text}) == ["BAD_USER_INPUT"]
    # json.dumps writes GraphQL's escapes (\n, \u0000, ...) for the literal.
    literal = TITLE_QUERY.replace("mutation($t: String!) ", "mutation ").replace(
        "$t", json.dumps(text)
    )
    assert codes_of(literal) == ["BAD_USER_INPUT"]


@settings(max_examples=60, deadline=None, database=None)
@given(text=TEXT.filter(lambda t: not has_control_characters(t)))
def test_fuzzed_text_without_one_passes_the_rule(text: str) -> None:
    assert codes_of(TITLE_QUERY, {"t": text}) == ["UNAUTHENTICATED"]
