"""Sessions at the edge (issue 13): an ended session's access token is refused by the gateway
long before it expires, on every path (a resolver, a cached answer, a WebSocket), and the
pages of emailed links act only on POST."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
import websockets
from websockets.typing import Subprotocol

from graphql_gateway.cache import revoked_field, revoked_session_key, user_key
from shared.auth import verify_token
from shared.links import LinkPurpose, LinkSigner
from tests.fixtures.parts import TEST_JWT_SECRET, eventually
from tests.security.conftest import PASSWORD, World, unique_email, verification_token

pytestmark = pytest.mark.integration

REGISTER = """mutation($e: String!, $p: String!) {
  registerUser(name: "Sess", email: $e, password: $p) { token refreshToken user { id } } }"""
LOGIN = """mutation($e: String!, $p: String!) {
  login(email: $e, password: $p) { token refreshToken user { id emailVerified } } }"""
DETAILS = "{ getUserDetails { id emailVerified } }"
CHANGE = """mutation($c: String!, $n: String!) {
  changePassword(currentPassword: $c, newPassword: $n) { token refreshToken } }"""
REFRESH = "mutation($r: String!) { refreshSession(refreshToken: $r) { token refreshToken } }"
NEW_PASSWORD = "the sessions test's new password"
WS_PROTOCOL = Subprotocol("graphql-transport-ws")


async def gql(
    world: World, query: str, variables: dict[str, Any] | None = None, token: str | None = None
) -> dict[str, Any]:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    async with httpx.AsyncClient(base_url=world.gateway_url) as client:
        response = await client.post(
            "/graphql", json={"query": query, "variables": variables or {}}, headers=headers
        )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def codes(body: dict[str, Any]) -> list[str]:
    return [e["extensions"]["code"] for e in body.get("errors") or []]


async def signed_up(world: World) -> tuple[str, dict[str, Any]]:
    email = unique_email("sess")
    body = await gql(world, REGISTER, {"e": email, "p": PASSWORD})
    return email, body["data"]["registerUser"]


async def refused(world: World, token: str) -> bool:
    return codes(await gql(world, DETAILS, token=token)) == ["UNAUTHENTICATED"]


async def test_logout_refuses_the_token_at_once(world: World) -> None:
    _, auth = await signed_up(world)
    token = auth["token"]
    assert codes(await gql(world, DETAILS, token=token)) == []
    logout = await gql(world, "mutation { logout }", token=token)
    assert logout["data"] == {"logout": True}
    # Not at the token's expiry (ACCESS_TOKEN_TTL_SECONDS) but on the very next request.
    body = await gql(world, DETAILS, token=token)
    assert codes(body) == ["UNAUTHENTICATED"]
    assert body["errors"][0]["message"] == "This session has ended; log in again."
    assert codes(await gql(world, REFRESH, {"r": auth["refreshToken"]})) == ["UNAUTHENTICATED"]


async def test_a_password_change_ends_earlier_sessions_even_for_cached_answers(
    world: World,
) -> None:
    email, first = await signed_up(world)
    second = (await gql(world, LOGIN, {"e": email, "p": PASSWORD}))["data"]["login"]
    # The same read twice: the second answer comes from the answer cache (no resolver runs).
    for _ in range(2):
        assert codes(await gql(world, DETAILS, token=second["token"])) == []
    changed = await gql(world, CHANGE, {"c": PASSWORD, "n": NEW_PASSWORD}, token=first["token"])
    assert codes(changed) == []
    fresh = changed["data"]["changePassword"]
    # `user.sessions-revoked` reaches the gateway: both earlier sessions are refused, on the
    # resolver path and on the cached one alike.
    await eventually(lambda: refused(world, second["token"]), what="the cached reader refused")
    await eventually(lambda: refused(world, first["token"]), what="the changer's old session")
    assert codes(await gql(world, DETAILS, token=fresh["token"])) == []
    for old in (first["refreshToken"], second["refreshToken"]):
        assert codes(await gql(world, REFRESH, {"r": old})) == ["UNAUTHENTICATED"]


async def test_an_ended_session_stays_refused_after_another_session_refilled_the_cache(
    world: World,
) -> None:
    """The ended session's field goes with the user's hash; the hash the other session fills
    next must name it again, or the cached answer (keyed by user and roles, not session) would
    be served to it."""
    email, first = await signed_up(world)
    second = (await gql(world, LOGIN, {"e": email, "p": PASSWORD}))["data"]["login"]
    for auth in (first, second):
        assert codes(await gql(world, DETAILS, token=auth["token"])) == []
    caller = verify_token(first["token"], secret=TEST_JWT_SECRET, issuer="fleet")
    await gql(world, "mutation { logout }", token=first["token"])
    store = world.gateway_app.state.gateway.cache._client
    key = user_key(caller.user_id)
    # `user.sessions-revoked` drops the user's hash (as every invalidation does): once it did,
    # the refill below is the hash's last word.
    await eventually(lambda: _gone(store, key), what="the user's hash dropped")
    for _ in range(2):
        assert codes(await gql(world, DETAILS, token=second["token"])) == []
    assert await store.hexists(key, revoked_field(str(caller.session_id)))
    assert await refused(world, first["token"])


async def _gone(store: Any, key: str) -> bool:
    return not await store.exists(key)


async def test_an_ended_session_cannot_open_a_websocket(world: World) -> None:
    _, auth = await signed_up(world)
    await gql(world, "mutation { logout }", token=auth["token"])
    url = world.gateway_url.replace("http://", "ws://", 1) + "/graphql"
    async with websockets.connect(url, subprotocols=[WS_PROTOCOL]) as connection:
        payload = {"Authorization": f"Bearer {auth['token']}"}
        await connection.send(json.dumps({"type": "connection_init", "payload": payload}))
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await asyncio.wait_for(connection.recv(), 10)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.reason == "UNAUTHENTICATED: This session has ended; log in again."


async def test_revocations_expire_with_the_last_token_of_the_session(world: World) -> None:
    _, auth = await signed_up(world)
    caller = verify_token(auth["token"], secret=TEST_JWT_SECRET, issuer="fleet")
    await gql(world, "mutation { logout }", token=auth["token"])
    cache = world.gateway_app.state.gateway.cache
    ttl = await cache._client.ttl(revoked_session_key(str(caller.session_id)))
    assert caller.expires_at is not None
    assert 0 < ttl <= world.settings["user_service"].access_token_ttl_seconds + 1


async def test_the_verify_page_shows_on_get_and_verifies_on_post(world: World) -> None:
    email, auth = await signed_up(world)
    user_app = world.apps["user_service"]
    user = await user_app.state.service.repository.by_id(auth["user"]["id"])
    path = f"/verify-email/{verification_token(user_app, user)}"
    async with httpx.AsyncClient(base_url=world.gateway_url) as client:
        shown = await client.get(path)
        assert shown.status_code == 200
        assert '<form method="post">' in shown.text
        assert shown.headers["referrer-policy"] == "no-referrer"
        assert "no-store" in shown.headers["cache-control"]
        # A GET (a mail scanner) verifies nothing.
        details = await gql(world, DETAILS, token=auth["token"])
        assert details["data"]["getUserDetails"]["emailVerified"] is False
        confirmed = await client.post(path)
        assert confirmed.status_code == 200, confirmed.text
        assert email in confirmed.text
        again = await client.post(path)
        assert again.status_code == 422
    # The cached details were dropped.
    details = await gql(world, DETAILS, token=auth["token"])
    assert details["data"]["getUserDetails"]["emailVerified"] is True


async def test_the_reset_page_shows_a_form_and_its_post_sets_the_password(world: World) -> None:
    email, auth = await signed_up(world)
    answer = await gql(
        world, "mutation($e: String!) { requestPasswordReset(email: $e) }", {"e": email}
    )
    unknown = await gql(
        world, "mutation($e: String!) { requestPasswordReset(email: $e) }", {"e": unique_email()}
    )
    assert answer["data"] == unknown["data"]
    user = await world.apps["user_service"].state.service.repository.by_id(auth["user"]["id"])
    token = LinkSigner(TEST_JWT_SECRET).sign(
        LinkPurpose.RESET_PASSWORD, user["_id"], ttl_seconds=600, token_id=user["reset_jti"]
    )
    async with httpx.AsyncClient(base_url=world.gateway_url) as client:
        form = await client.get(f"/reset-password/{token}")
        assert form.status_code == 200
        assert 'type="password" name="password"' in form.text
        too_short = await client.post(f"/reset-password/{token}", data={"password": "x"})
        assert too_short.status_code == 422
        done = await client.post(f"/reset-password/{token}", data={"password": NEW_PASSWORD})
        assert done.status_code == 200, done.text
    login = await gql(world, LOGIN, {"e": email, "p": NEW_PASSWORD})
    assert codes(login) == []
    await eventually(lambda: refused(world, auth["token"]), what="the session before the reset")
