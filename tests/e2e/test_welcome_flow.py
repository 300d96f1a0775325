"""A new user's first minutes, through GraphQL only: register, log in, read the details, find the
welcome notification, get the welcome email, open it (the pixel) and see the notification read.
Plus the errors a client meets on the way."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx
import pytest

from devstack.mbox import Mailbox
from tests.fixtures.fleet import RunningFleet
from tests.fixtures.parts import eventually

pytestmark = pytest.mark.e2e

PASSWORD = "correct horse battery staple"
FLOW_TIMEOUT_SECONDS = 30.0

REGISTER = """
mutation Register($name: String!, $email: String!, $password: String!) {
  registerUser(name: $name, email: $email, password: $password) {
    token
    user { id name email preferences order_status }
  }
}
"""
LOGIN = """
mutation Login($email: String!, $password: String!) {
  login(email: $email, password: $password) { token user { id email } }
}
"""
DETAILS = """
query { getUserDetails { id name email preferences order_status orders { productId }
  purchase_history { orderId } } }
"""
VERIFIED = "query { getUserDetails { emailVerified } }"
NOTIFICATIONS = """
query Notifications($unreadOnly: Boolean) {
  getUserNotifications(unreadOnly: $unreadOnly) { id userId type content sentAt read }
}
"""
IMG_SRC = re.compile(r'<img[^>]*\ssrc="([^"]+)"', re.IGNORECASE)
VERIFY_HREF = re.compile(r'<a href="([^"]+/verify-email/[^"]+)"')


def unique_email() -> str:
    return f"e2e-{uuid.uuid4().hex[:12]}@example.com"


@pytest.fixture
async def client(fleet: RunningFleet) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=10) as http:
        yield http


async def graphql(
    client: httpx.AsyncClient,
    fleet: RunningFleet,
    query: str,
    variables: dict[str, Any] | None = None,
    token: str | None = None,
) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = await client.post(
        fleet.graphql, json={"query": query, "variables": variables or {}}, headers=headers
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def error_code(body: dict[str, Any]) -> str:
    assert body.get("errors"), body
    return str(body["errors"][0]["extensions"]["code"])


def data_of(body: dict[str, Any]) -> dict[str, Any]:
    assert not body.get("errors"), body["errors"]
    data: dict[str, Any] = body["data"]
    return data


def emails_to(mail_dir: Path, address: str) -> list[EmailMessage]:
    """The emails the sink received for that address, oldest first."""
    return [
        mail.message
        for mail in Mailbox(mail_dir).messages()
        if address.lower() in mail.header("To").lower()
    ]


def verify_link_of(message: EmailMessage) -> str:
    """The verification link of a welcome (or resent verification) email."""
    links = VERIFY_HREF.findall(html_of(message))
    assert len(links) == 1, html_of(message)
    return str(links[0]).replace("&amp;", "&")


async def verify_by_mail(client: httpx.AsyncClient, fleet: RunningFleet, address: str) -> None:
    """Follow the welcome email's link as a person does: open the page, press the button."""
    messages = await eventually(
        lambda: emails_to(fleet.mail_dir, address),
        timeout=FLOW_TIMEOUT_SECONDS,
        what=f"the welcome email of {address}",
    )
    link = verify_link_of(messages[0])
    assert (await client.get(link)).status_code == 200
    confirmed = await client.post(link)
    assert confirmed.status_code == 200, confirmed.text


def html_of(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("html",))
    assert part is not None, "the email has no HTML part"
    assert isinstance(part, EmailMessage)
    return str(part.get_content())


async def register(
    client: httpx.AsyncClient, fleet: RunningFleet, address: str, password: str = PASSWORD
) -> dict[str, Any]:
    return await graphql(
        client,
        fleet,
        REGISTER,
        {"name": "Ada Lovelace", "email": address, "password": password},
    )


async def test_welcome_flow(client: httpx.AsyncClient, fleet: RunningFleet) -> None:
    address = unique_email()

    registered = data_of(await register(client, fleet, address))["registerUser"]
    user = registered["user"]
    assert user["email"] == address
    assert user["name"] == "Ada Lovelace"
    assert user["preferences"] == ["order_updates"]
    assert user["order_status"] == "none"
    assert registered["token"]

    logged_in = data_of(
        await graphql(client, fleet, LOGIN, {"email": address, "password": PASSWORD})
    )["login"]
    assert logged_in["user"]["id"] == user["id"]
    token = logged_in["token"]

    details = data_of(await graphql(client, fleet, DETAILS, token=token))["getUserDetails"]
    assert details["id"] == user["id"]
    assert details["email"] == address
    assert details["orders"] == []
    assert details["purchase_history"] == []

    async def unread_welcome() -> list[dict[str, Any]]:
        body = await graphql(client, fleet, NOTIFICATIONS, {"unreadOnly": True}, token)
        return data_of(body)["getUserNotifications"]

    unread = await eventually(
        unread_welcome, timeout=FLOW_TIMEOUT_SECONDS, what="the welcome notification"
    )
    assert len(unread) == 1
    welcome = unread[0]
    assert welcome["type"] == "other"
    assert welcome["read"] is False
    assert welcome["userId"] == user["id"]

    # Both lists are read (and so cached by the gateway) before the email is opened.
    everything = data_of(await graphql(client, fleet, NOTIFICATIONS, {"unreadOnly": False}, token))
    assert [(n["id"], n["read"]) for n in everything["getUserNotifications"]] == [
        (welcome["id"], False)
    ]

    messages = await eventually(
        lambda: emails_to(fleet.mail_dir, address),
        timeout=FLOW_TIMEOUT_SECONDS,
        what="the welcome email in the mail folder",
    )
    assert len(messages) == 1
    html = html_of(messages[0])
    # The welcome email carries the verification link: its page verifies on POST only.
    link = verify_link_of(messages[0])
    assert link.startswith(f"{fleet.state['services']['graphql_gateway']}/verify-email/")
    shown = await client.get(link)
    assert shown.status_code == 200
    assert '<form method="post">' in shown.text
    assert (await client.post(link)).status_code == 200
    pixels = IMG_SRC.findall(html)
    assert len(pixels) == 1, html
    pixel = pixels[0].replace("&amp;", "&")
    gateway = fleet.state["services"]["graphql_gateway"]
    assert pixel.startswith(f"{gateway}/"), (pixel, gateway)

    opened = await client.get(pixel)
    assert opened.status_code == 200
    assert opened.headers["content-type"].startswith("image/")

    async def read_welcome() -> dict[str, Any] | None:
        body = await graphql(client, fleet, NOTIFICATIONS, {"unreadOnly": False}, token)
        listed = data_of(body)["getUserNotifications"]
        match = [n for n in listed if n["id"] == welcome["id"]]
        return match[0] if match and match[0]["read"] else None

    read = await eventually(
        read_welcome, timeout=FLOW_TIMEOUT_SECONDS, what="the notification marked read"
    )
    assert read["type"] == "other"

    async def nothing_unread() -> bool:
        body = await graphql(client, fleet, NOTIFICATIONS, {}, token)
        return data_of(body)["getUserNotifications"] == []

    await eventually(
        nothing_unread, timeout=FLOW_TIMEOUT_SECONDS, what="the unread list to be empty"
    )
    verified = data_of(await graphql(client, fleet, VERIFIED, token=token))["getUserDetails"]
    assert verified["emailVerified"] is True


async def test_wrong_password_is_unauthenticated(
    client: httpx.AsyncClient, fleet: RunningFleet
) -> None:
    address = unique_email()
    data_of(await register(client, fleet, address))
    body = await graphql(client, fleet, LOGIN, {"email": address, "password": PASSWORD + "!"})
    assert error_code(body) == "UNAUTHENTICATED"
    assert PASSWORD not in str(body)


async def test_unknown_email_is_unauthenticated(
    client: httpx.AsyncClient, fleet: RunningFleet
) -> None:
    body = await graphql(client, fleet, LOGIN, {"email": unique_email(), "password": PASSWORD})
    assert error_code(body) == "UNAUTHENTICATED"


async def test_a_taken_email_is_a_conflict(client: httpx.AsyncClient, fleet: RunningFleet) -> None:
    address = unique_email()
    data_of(await register(client, fleet, address))
    body = await register(client, fleet, address.upper())
    assert error_code(body) == "CONFLICT"


async def test_a_short_password_is_bad_user_input(
    client: httpx.AsyncClient, fleet: RunningFleet
) -> None:
    address = unique_email()
    body = await register(client, fleet, address, password="short")
    assert error_code(body) == "BAD_USER_INPUT"
    # Nothing was stored: the address is still free.
    data_of(await register(client, fleet, address))


@pytest.mark.parametrize("token", [None, "not-a-token"])
async def test_user_details_need_a_valid_token(
    client: httpx.AsyncClient, fleet: RunningFleet, token: str | None
) -> None:
    body = await graphql(client, fleet, DETAILS, token=token)
    assert error_code(body) == "UNAUTHENTICATED"
    assert body.get("data") is None
