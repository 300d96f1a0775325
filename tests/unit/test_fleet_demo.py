"""The demo's pieces that need no fleet (fleet/demo.py): its documents are trusted as it
sends them, the roles of a token, and the verification link read from either mail page's API
(the local stack's and Mailpit's); a second run, and what it says when no admin can be made."""

from __future__ import annotations

import base64
import json
from typing import Any

import httpx
import pytest

from fleet.demo import (
    CUSTOMERS,
    DEMO_ADMIN_EMAIL,
    Demo,
    DemoError,
    MailBox,
    load_operations,
    token_roles,
)
from graphql_gateway.persisted import DEFAULT_MANIFEST, document_hash, load_manifest
from shared.errors import ErrorCode

LINK = "http://127.0.0.1:4000/verify-email/abc.DEF-123_x"
HTML = f'<p>Welcome</p><a href="{LINK}">Verify</a>'


def test_every_demo_operation_is_in_the_trusted_documents_as_sent() -> None:
    trusted = load_manifest(DEFAULT_MANIFEST)
    operations = load_operations()
    assert {"DemoCatalog", "DemoRegister", "DemoPlaceOrder", "DemoVerifyEmail"} <= set(operations)
    for name, document in operations.items():
        assert trusted.get(document_hash(document)) == document, name


def test_the_roles_of_a_token_are_read_from_its_claims() -> None:
    claims = base64.urlsafe_b64encode(json.dumps({"roles": ["customer", "admin"]}).encode())
    token = f"e30.{claims.decode().rstrip('=')}.signature"
    assert token_roles(token) == ["customer", "admin"]
    assert token_roles("not a token") == []


def mail_page(routes: dict[str, Any]) -> httpx.Client:
    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path in routes:
            return httpx.Response(200, json=routes[request.url.path])
        return httpx.Response(404, text="Not Found")

    return httpx.Client(transport=httpx.MockTransport(answer))


def test_the_stacks_mail_page_gives_the_newest_link_to_the_address() -> None:
    routes = {
        "/api/messages": {
            "messages": [
                {"id": "2", "to": f"Fleet Admin <{DEMO_ADMIN_EMAIL}>", "subject": "Welcome"},
                {"id": "1", "to": "someone@example.com", "subject": "Welcome"},
            ]
        },
        "/api/messages/2": {"html": HTML, "text": None},
        "/api/messages/1": {"html": HTML.replace("abc", "other"), "text": None},
    }
    with mail_page(routes) as http:
        box = MailBox(http, "http://mail.test/")
        assert box.verify_tokens(DEMO_ADMIN_EMAIL, set()) == [("2", "abc.DEF-123_x")]
        assert box.verify_tokens(DEMO_ADMIN_EMAIL, {"2"}) == []


def test_mailpits_api_is_read_when_the_stacks_is_not_there() -> None:
    routes = {
        "/api/v1/messages": {
            "messages": [
                {"ID": "m2", "To": [{"Name": "", "Address": "ada@demo.fleet"}]},
                {"ID": "m1", "To": [{"Name": "Admin", "Address": DEMO_ADMIN_EMAIL}]},
            ]
        },
        "/api/v1/message/m1": {"HTML": "", "Text": f"Open {LINK} to verify."},
    }
    with mail_page(routes) as http:
        box = MailBox(http, "http://mail.test")
        assert box.verify_tokens(DEMO_ADMIN_EMAIL, set()) == [("m1", "abc.DEF-123_x")]


def test_no_mail_api_is_one_clear_error() -> None:
    with mail_page({}) as http, pytest.raises(DemoError, match="no message API"):
        MailBox(http, "http://mail.test").verify_tokens(DEMO_ADMIN_EMAIL, set())


def token_with(*roles: str) -> str:
    claims = base64.urlsafe_b64encode(json.dumps({"roles": list(roles)}).encode()).decode()
    return f"e30.{claims.rstrip('=')}.signature"


class FakeFleet:
    """The gateway as the demo sees it: accounts by address, orders by idempotency key."""

    def __init__(self, admin_emails: set[str]) -> None:
        self.admin_emails = admin_emails
        self.verified: set[str] = set()
        self.accounts: set[str] = set()
        self.orders: dict[tuple[str, str], str] = {}
        self.recommended: list[str] = []

    def auth(self, email: str) -> dict[str, Any]:
        admin = email in self.admin_emails and email in self.verified
        roles = ("customer", "admin") if admin else ("customer",)
        return {
            "token": token_with(*roles) + f"|{email}",
            "user": {"id": email, "email": email, "emailVerified": email in self.verified},
        }

    def call(
        self, operation: str, variables: dict[str, Any] | None = None, token: str | None = None
    ) -> dict[str, Any]:
        variables = variables or {}
        email = token.rsplit("|", 1)[1] if token else ""
        if operation == "DemoCatalog":
            return {"products": {"items": [{"productId": str(i)} for i in range(1, 9)]}}
        if operation == "DemoRegister":
            if variables["email"] in self.accounts:
                raise DemoError("taken", ErrorCode.CONFLICT)
            self.accounts.add(variables["email"])
            return {"registerUser": self.auth(variables["email"])}
        if operation == "DemoLogin":
            return {"login": self.auth(variables["email"])}
        if operation == "DemoPlaceOrder":
            key = (email, variables["idempotencyKey"])
            self.orders.setdefault(key, f"order-{len(self.orders)}")
            return {"placeOrder": {"id": self.orders[key], "status": "Placed"}}
        if operation == "DemoRecommend":
            self.recommended.append(email)
            return {"productRecommendation": "Recommendations are being prepared."}
        if operation == "DemoNotifications":
            return {"getUserNotifications": [{"id": "n1"}]}
        if operation == "DemoVerifyEmail":
            self.verified.add(variables["token"])
            return {"verifyEmail": {"emailVerified": True}}
        raise AssertionError(operation)


class FakeMail:
    base_url = "http://mail.test"

    def __init__(self, reachable: bool = True) -> None:
        self.reachable = reachable

    def verify_tokens(self, address: str, skip: set[str]) -> list[tuple[str, str]]:
        if not self.reachable:
            raise DemoError("The mail page at http://mail.test has no message API.")
        # The fake's link token is the address itself.
        return [] if "m1" in skip else [("m1", address)]


def demo_of(fleet: FakeFleet, mail: FakeMail | None = None) -> Demo:
    return Demo(fleet, mail or FakeMail(), mail_timeout=0, poll_interval=0.01)  # type: ignore[arg-type]


def test_a_second_run_logs_in_places_nothing_and_asks_for_nothing() -> None:
    fleet = FakeFleet({DEMO_ADMIN_EMAIL})
    first = demo_of(fleet).run()
    orders, recommended = dict(fleet.orders), list(fleet.recommended)
    second = demo_of(fleet).run()
    assert all(a.registered for a in first.accounts)
    assert not any(a.registered for a in second.accounts)
    assert fleet.orders == orders
    assert len(orders) == sum(len(user.orders) for user in CUSTOMERS)
    assert fleet.recommended == recommended == [user.email for user in CUSTOMERS]
    assert first.admin_ready and second.admin_ready
    assert second.export_line == f"export FLEET_TOKEN={second.admin.token}"


def test_an_address_missing_from_admin_emails_is_said_plainly() -> None:
    result = demo_of(FakeFleet(set())).run()
    assert not result.admin_ready
    assert result.admin.verified
    assert any(f"ADMIN_EMAILS={DEMO_ADMIN_EMAIL}" in warning for warning in result.warnings)


def test_without_a_mail_page_the_demo_says_what_to_do() -> None:
    result = demo_of(FakeFleet({DEMO_ADMIN_EMAIL}), FakeMail(reachable=False)).run()
    assert not result.admin_ready
    assert any("follow the link" in warning for warning in result.warnings)
