"""The demo's pieces that need no fleet (shared/cli/demo.py): its documents are trusted as it
sends them, the roles of a token, and the verification link read from either mail page's API
(the local stack's and Mailpit's)."""

from __future__ import annotations

import base64
import json
from typing import Any

import httpx
import pytest

from graphql_gateway.persisted import DEFAULT_MANIFEST, document_hash, load_manifest
from shared.cli.demo import DEMO_ADMIN_EMAIL, DemoError, MailBox, load_operations, token_roles

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
