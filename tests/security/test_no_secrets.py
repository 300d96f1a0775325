"""No password or token in any log line, no stack trace in any error answer.

The whole fleet runs in this process (tests/security/conftest.py), so every log line of the
gateway and the services, ours (structlog) and the libraries' (logging), is captured here and
searched for a known password and the tokens used."""

from __future__ import annotations

import logging
import uuid
from typing import Any

import httpx
import pytest
from structlog.testing import capture_logs

from notification_service import tracking
from scheduler_service import domain as scheduler_domain
from shared.links import LinkSigner
from tests.fixtures.parts import TEST_JWT_SECRET
from tests.security.conftest import (
    Kind,
    World,
    expired_token,
    forged_token,
    unique_email,
    verification_token,
)

pytestmark = pytest.mark.integration

REGISTER = """mutation($n: String!, $e: String!, $p: String!) {
  registerUser(name: $n, email: $e, password: $p) { token refreshToken user { id email } } }"""
REFRESH = "mutation($r: String!) { refreshSession(refreshToken: $r) { token refreshToken } }"
LOGIN = "mutation($e: String!, $p: String!) { login(email: $e, password: $p) { token } }"
DETAILS = "{ getUserDetails { id email } }"


async def gql(
    client: httpx.AsyncClient, query: str, variables: dict[str, Any], token: str | None = None
) -> dict[str, Any]:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    response = await client.post(
        "/graphql", json={"query": query, "variables": variables}, headers=headers
    )
    assert "Traceback" not in response.text
    body: dict[str, Any] = response.json()
    return body


def everything_logged(events: list[dict[str, Any]], caplog: pytest.LogCaptureFixture) -> str:
    ours = "\n".join(repr(event) for event in events)
    formatter = logging.Formatter()
    theirs = "\n".join(
        r.getMessage() + (formatter.formatException(r.exc_info) if r.exc_info else "")
        for r in caplog.records
        # uvicorn's access log names whole paths (a link's token): shared.serve turns it off,
        # and the log capture of the test run would turn it back on for the in-process gateway.
        if r.name != "uvicorn.access"
    )
    return ours + "\n" + theirs


async def test_no_password_or_token_in_the_logs(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    password = f"Known-Password-{uuid.uuid4().hex}"
    email = unique_email("secret")
    users = world.clients["user_service"]
    with capture_logs() as events, caplog.at_level(logging.DEBUG):
        async with httpx.AsyncClient(base_url=world.gateway_url) as client:
            registered = await gql(client, REGISTER, {"n": "S", "e": email, "p": password})
            token = registered["data"]["registerUser"]["token"]
            user_id = registered["data"]["registerUser"]["user"]["id"]
            # Refused inputs that carry the password: a taken email, a wrong type, a bad login.
            taken = await gql(client, REGISTER, {"n": "S", "e": email, "p": password})
            assert [e["extensions"]["code"] for e in taken["errors"]] == ["CONFLICT"]
            wrong_type = await gql(client, REGISTER, {"n": "S", "e": email, "p": [password]})
            assert wrong_type["errors"]
            for attempt in (password + "x", password):
                await gql(client, LOGIN, {"e": email, "p": attempt})
            assert (await gql(client, DETAILS, {}, token))["data"]["getUserDetails"][
                "id"
            ] == user_id
            account = world.owner
            for bad in (forged_token(account), expired_token(account), token + "x"):
                refused = await gql(client, DETAILS, {}, bad)
                assert refused["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
            pixel_token = tracking.sign(LinkSigner(TEST_JWT_SECRET), "n-1", user_id, 600)
            unsubscribe = scheduler_domain.unsubscribe_token(TEST_JWT_SECRET, user_id, 600)
            assert (await client.get(f"/track/{pixel_token}.gif")).status_code == 200
            assert (await client.get(f"/unsubscribe/{unsubscribe}")).status_code == 200
            assert (await client.post(f"/unsubscribe/{unsubscribe}")).status_code == 200
            # The refresh token, a used one, and a verification link's token.
            refresh = registered["data"]["registerUser"]["refreshToken"]
            refreshed = await gql(client, REFRESH, {"r": refresh})
            assert refreshed["data"]["refreshSession"]["refreshToken"]
            reused = await gql(client, REFRESH, {"r": refresh})
            assert reused["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
            stored = await world.apps["user_service"].state.service.repository.by_id(user_id)
            verify = verification_token(world.apps["user_service"], stored)
            assert (await client.post(f"/verify-email/{verify}")).status_code == 200
        # And straight at the service, as a caller inside the network.
        await users.post("/auth/login", json={"email": email, "password": password + "y"})
        await users.get("/users/me", headers={"authorization": f"Bearer {token}"})
        await users.get("/users/me", headers={"authorization": f"Bearer {token}x"})

    logged = everything_logged(events, caplog)
    assert len(events) > 10, "nothing was captured: the test would prove nothing"
    for secret in (
        password,
        token,
        pixel_token,
        unsubscribe,
        forged_token(account)[:60],
        refresh.rsplit(".", 1)[1],
        refreshed["data"]["refreshSession"]["refreshToken"].rsplit(".", 1)[1],
        verify,
    ):
        assert secret not in logged
    # The signature part of a token alone is a secret too.
    assert token.rsplit(".", 1)[1] not in logged


async def test_unexpected_errors_answer_without_a_stack_trace(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    repository = world.apps["user_service"].state.service.repository

    async def crash(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("boom: internal detail /srv/app/repository.py line 12")

    monkeypatch.setattr(repository, "by_id", crash)
    direct = await world.clients["user_service"].get("/users/me", headers=world.headers(Kind.OTHER))
    assert direct.status_code == 500
    assert direct.json() == {
        "error": {"code": "INTERNAL_SERVER_ERROR", "message": "Something went wrong on our side."}
    }
    async with httpx.AsyncClient(base_url=world.gateway_url) as client:
        body = await gql(client, DETAILS, {}, world.other.token)
    [error] = body["errors"]
    # The service's own 500 body passes through: its code, its sentence, nothing more.
    assert error["extensions"] == {"code": "INTERNAL_SERVER_ERROR"}
    assert error["message"] == "Something went wrong on our side."
    for answer in (direct.text, str(body)):
        assert "boom" not in answer
        assert "Traceback" not in answer
        assert "repository.py" not in answer


async def test_bad_input_answers_one_sentence(world: World) -> None:
    users = world.clients["user_service"]
    response = await users.post("/users", json={"name": "x", "email": "nope", "password": 1})
    assert response.status_code == 422
    message = response.json()["error"]["message"]
    assert message.endswith(".")
    assert "\n" not in message
    assert "Traceback" not in response.text


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "code"),
    [
        ("GET", "/no-such-path", None, 404, "NOT_FOUND"),
        ("DELETE", "/users", None, 405, "BAD_USER_INPUT"),
        ("POST", "/users", b'{"name": ', 422, "BAD_USER_INPUT"),
    ],
    ids=["unknown-path", "wrong-method", "broken-json"],
)
async def test_framework_refusals_use_the_error_body(
    world: World, method: str, path: str, body: bytes | None, status: int, code: str
) -> None:
    response = await world.clients["user_service"].request(
        method, path, content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == status
    error = response.json()["error"]
    assert error["code"] == code
    assert error["message"].endswith(".")


def test_the_producer_never_logs_a_message_value(caplog: pytest.LogCaptureFixture) -> None:
    # aiokafka logs each message it sends at DEBUG, value included: a user.registered value
    # holds the verification link's token (the test above caught it when it rebuilt the token
    # within the second of the registration).
    import shared.publisher  # noqa: F401 - installs the filter

    value = b'{"verification_url": "https://fleet.example/verify-email/eyJ-secret-token"}'
    with caplog.at_level(logging.DEBUG):
        logging.getLogger("aiokafka.producer.producer").debug(
            "Sending (key=%s value=%s) to %s", b"user-1", value, "user.registered-0"
        )
        logging.getLogger("aiokafka.producer.producer").debug("Closing the KafkaProducer.")
    assert "eyJ-secret-token" not in caplog.text
    assert "Closing the KafkaProducer." in caplog.text  # the logger itself still speaks
