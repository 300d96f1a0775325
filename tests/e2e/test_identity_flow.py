"""Identity end to end, through GraphQL, the mail folder and the link pages only (issue 13):
sessions refreshed, reused, ended; a forgotten password reset through its emailed link."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.e2e.test_welcome_flow import (
    FLOW_TIMEOUT_SECONDS,
    PASSWORD,
    data_of,
    emails_to,
    error_code,
    graphql,
    html_of,
    register,
    unique_email,
    verify_by_mail,
)
from tests.fixtures.fleet import RunningFleet
from tests.fixtures.parts import eventually

pytestmark = pytest.mark.e2e

LOGIN = """mutation($e: String!, $p: String!) {
  login(email: $e, password: $p) { token refreshToken user { id emailVerified } } }"""
REFRESH = "mutation($r: String!) { refreshSession(refreshToken: $r) { token refreshToken } }"
DETAILS = "query { getUserDetails { id emailVerified } }"
RESET_HREF = re.compile(r'<a href="([^"]+/reset-password/[^"]+)"')
NEW_PASSWORD = "an e2e replacement password"


@pytest.fixture
async def client(fleet: RunningFleet) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=10) as http:
        yield http


async def login(
    client: httpx.AsyncClient, fleet: RunningFleet, address: str, password: str = PASSWORD
) -> dict[str, Any]:
    return await graphql(client, fleet, LOGIN, {"e": address, "p": password})


async def test_sessions_are_refreshed_and_ended(
    client: httpx.AsyncClient, fleet: RunningFleet
) -> None:
    address = unique_email()
    data_of(await register(client, fleet, address))
    await verify_by_mail(client, fleet, address)
    session = data_of(await login(client, fleet, address))["login"]
    assert session["user"]["emailVerified"] is True

    rotated = data_of(await graphql(client, fleet, REFRESH, {"r": session["refreshToken"]}))
    fresh = rotated["refreshSession"]
    assert data_of(await graphql(client, fleet, DETAILS, token=fresh["token"]))
    # The old refresh token again: someone holds a copy, so the whole session ends.
    reused = await graphql(client, fleet, REFRESH, {"r": session["refreshToken"]})
    assert error_code(reused) == "UNAUTHENTICATED"

    async def ended() -> bool:
        body = await graphql(client, fleet, DETAILS, token=fresh["token"])
        return bool(body.get("errors")) and error_code(body) == "UNAUTHENTICATED"

    await eventually(ended, timeout=FLOW_TIMEOUT_SECONDS, what="the reused session refused")

    other = data_of(await login(client, fleet, address))["login"]
    assert data_of(await graphql(client, fleet, "mutation { logout }", token=other["token"])) == {
        "logout": True
    }
    assert error_code(await graphql(client, fleet, DETAILS, token=other["token"])) == (
        "UNAUTHENTICATED"
    )


async def test_a_forgotten_password_is_reset_through_the_emailed_link(
    client: httpx.AsyncClient, fleet: RunningFleet
) -> None:
    address = unique_email()
    before = data_of(await register(client, fleet, address))["registerUser"]
    asked = await graphql(
        client, fleet, "mutation($e: String!) { requestPasswordReset(email: $e) }", {"e": address}
    )
    unknown = await graphql(
        client,
        fleet,
        "mutation($e: String!) { requestPasswordReset(email: $e) }",
        {"e": unique_email()},
    )
    assert data_of(asked) == data_of(unknown)

    def reset_mail() -> list[Any]:
        return [m for m in emails_to(fleet.mail_dir, address) if "password" in m["Subject"]]

    [mail] = await eventually(reset_mail, timeout=FLOW_TIMEOUT_SECONDS, what="the reset email")
    [link] = RESET_HREF.findall(html_of(mail))
    link = link.replace("&amp;", "&")
    form = await client.get(link)
    assert form.status_code == 200
    assert 'name="password"' in form.text
    done = await client.post(link, data={"password": NEW_PASSWORD})
    assert done.status_code == 200, done.text
    assert error_code(await login(client, fleet, address)) == "UNAUTHENTICATED"
    assert data_of(await login(client, fleet, address, NEW_PASSWORD))["login"]["token"]
    # Used once: refused.
    assert (await client.post(link, data={"password": PASSWORD})).status_code == 422

    async def old_session_ended() -> bool:
        body = await graphql(client, fleet, DETAILS, token=before["token"])
        return bool(body.get("errors")) and error_code(body) == "UNAUTHENTICATED"

    await eventually(old_session_ended, timeout=FLOW_TIMEOUT_SECONDS, what="the old session")
