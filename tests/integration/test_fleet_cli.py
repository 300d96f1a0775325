"""The `fleet` command line against a real stack started by the launcher (broker, Redis, the kafka
admin service and the user service): status from the state file, topics, dead letters listed and
replayed, and a topic tailed from the broker."""

from __future__ import annotations

import asyncio
import json
import secrets
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from typer.testing import CliRunner

from devstack import config as stack_config
from devstack.config import ADMIN, SERVICES
from fleet.app import app
from fleet.targets import DEFAULT_MAIL_PAGE_PORT, DEFAULT_PORTS
from shared.auth import issue_token, verify_token
from shared.events.envelope import Envelope
from shared.events.models import PurchaseHistoryProvided, UserRegistered
from shared.events.topics import dead_letter_topic
from shared.publisher import CORRELATION_HEADER, EVENT_TYPE_HEADER
from shared.services import GATEWAY
from tests.fixtures.fleet import RunningFleet, launch_fleet
from tests.fixtures.parts import eventually, read_all

pytestmark = pytest.mark.integration

SECRET = secrets.token_urlsafe(32)
# Listed in ADMIN_EMAILS: an admin once its welcome link is followed (the users commands).
CLI_ADMIN = f"cli-admin-{uuid.uuid4().hex[:8]}@example.com"
CLI_PASSWORD = "cli admin password 1"
# The kafka admin service and one service besides it; nobody consumes the replayed topic.
STARTED = ["user_service"]
REPLAYED_TOPIC = PurchaseHistoryProvided.topic
DLQ_TIMEOUT_SECONDS = 30.0


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningFleet, Path]]:
    workdir = tmp_path_factory.mktemp("fleet-cli")
    running = launch_fleet(
        workdir, env={"JWT_SECRET": SECRET, "ADMIN_EMAILS": CLI_ADMIN}, services=STARTED
    )
    try:
        yield running, workdir / "stack-state.json"
    finally:
        try:
            running.stop()
        finally:
            running.kill_everything()


def token(roles: list[str]) -> str:
    return issue_token(
        user_id=f"cli-{uuid.uuid4().hex[:8]}",
        email="cli@example.com",
        roles=roles,
        secret=SECRET,
        issuer="fleet",
        ttl_seconds=600,
    )


def run(*args: str, fleet_token: str | None = None) -> Any:
    env = {"FLEET_TOKEN": fleet_token} if fleet_token else {"FLEET_TOKEN": ""}
    return CliRunner().invoke(app, list(args), env=env)


def as_json(result: Any) -> Any:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


async def publish(broker: str, topic: str, envelope: Envelope, headers: dict[str, str]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=broker, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(
            topic,
            envelope.to_bytes(),
            key=b"cli-user",
            headers=[(k, v.encode()) for k, v in headers.items()],
        )
    finally:
        await producer.stop()


def test_status_reads_every_started_service_from_the_state_file(
    stack: tuple[RunningFleet, Path],
) -> None:
    _, state_file = stack
    report = as_json(run("status", "--state-file", str(state_file), "--json"))
    services = {row["service"]: row for row in report["services"]}
    assert set(services) == {"kafka_admin_service", *STARTED}
    assert all(row["healthy"] and row["ready"] for row in services.values())
    assert report["lag"] is None  # no token, no lag

    with_lag = as_json(
        run("status", "--state-file", str(state_file), "--json", fleet_token=token(["admin"]))
    )
    groups = {row["group"] for row in with_lag["lag"]}
    assert "user_service" in groups
    assert isinstance(with_lag["dead_letters"], list)

    waited = run("status", "--state-file", str(state_file), "--wait", "--timeout", "30")
    assert waited.exit_code == 0, waited.output
    assert "user_service" in waited.stdout


def test_the_default_ports_are_the_launchers() -> None:
    launched = {spec.name: spec.port for spec in (ADMIN, *SERVICES, GATEWAY)}
    assert launched == DEFAULT_PORTS
    assert list(DEFAULT_PORTS) == list(launched)
    assert DEFAULT_MAIL_PAGE_PORT == stack_config.DEFAULT_MAIL_PAGE_PORT


def test_status_fails_when_a_service_does_not_answer(tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    state.write_text(json.dumps({"services": {"user_service": "http://127.0.0.1:9"}}))
    result = run("status", "--state-file", str(state), "--http-timeout", "0.5")
    assert result.exit_code == 1
    assert "no answer" in result.stdout


def test_the_admin_commands_need_an_admin_token(stack: tuple[RunningFleet, Path]) -> None:
    _, state_file = stack
    missing = run("topics", "--state-file", str(state_file))
    assert missing.exit_code == 1
    assert "UNAUTHENTICATED" in missing.output
    customer = run("dlq", "list", "--state-file", str(state_file), fleet_token=token(["customer"]))
    assert customer.exit_code == 1
    assert "FORBIDDEN" in customer.output


def test_topics_lists_the_registry(stack: tuple[RunningFleet, Path]) -> None:
    _, state_file = stack
    rows = as_json(
        run("topics", "--state-file", str(state_file), "--json", fleet_token=token(["admin"]))
    )
    names = {row["name"] for row in rows}
    assert {"user.registered", "order.placed", "order.placed.dlq"} <= names
    table = run("topics", "--state-file", str(state_file), fleet_token=token(["admin"]))
    assert table.exit_code == 0, table.output
    assert "user.registered" in table.stdout


def test_a_dead_letter_is_listed_replayed_once_and_tailed(
    stack: tuple[RunningFleet, Path],
) -> None:
    fleet, state_file = stack
    admin = token(["admin"])
    dlq = dead_letter_topic(REPLAYED_TOPIC)
    correlation = f"cli-{uuid.uuid4().hex}"
    envelope = Envelope(
        type=PurchaseHistoryProvided.event_type,
        source="test_fleet_cli",
        correlation_id=correlation,
        data={"user_id": "cli-user", "request_id": correlation, "history": []},
    )
    # Sync test: `fleet tail` runs its own event loop, as on a terminal.
    asyncio.run(
        publish(
            fleet.state["kafka"],
            dlq,
            envelope,
            {
                CORRELATION_HEADER: correlation,
                EVENT_TYPE_HEADER: envelope.type,
                "dlq_original_topic": REPLAYED_TOPIC,
                "dlq_error": "RuntimeError: planted by the test",
            },
        )
    )

    def depth() -> int:
        rows = as_json(
            run("dlq", "list", "--state-file", str(state_file), "--json", fleet_token=admin)
        )
        return next(int(row["depth"]) for row in rows if row["topic"] == dlq)

    asyncio.run(eventually(lambda: depth() >= 1, timeout=DLQ_TIMEOUT_SECONDS, what="dlq depth"))
    listed = run("dlq", "list", "--state-file", str(state_file), fleet_token=admin)
    assert dlq in listed.stdout
    reported = as_json(run("status", "--state-file", str(state_file), "--json", fleet_token=admin))
    assert dlq in {row["topic"] for row in reported["dead_letters"]}

    first = as_json(
        run(
            "dlq",
            "replay",
            REPLAYED_TOPIC,
            "--state-file",
            str(state_file),
            "--json",
            fleet_token=admin,
        )
    )
    assert first == {"topic": dlq, "replayed": 1}
    again = run("dlq", "replay", dlq, "--state-file", str(state_file), fleet_token=admin)
    assert again.exit_code == 0, again.output
    assert "replayed 0 message(s)" in again.stdout

    tailed = run(
        "tail",
        REPLAYED_TOPIC,
        "--state-file",
        str(state_file),
        "--from-beginning",
        "--count",
        "1",
        "--idle-timeout",
        str(DLQ_TIMEOUT_SECONDS),
        "--json",
    )
    assert tailed.exit_code == 0, tailed.output
    line = json.loads(tailed.stdout.splitlines()[0])
    assert line["envelope"]["correlation_id"] == correlation
    assert line["envelope"]["type"] == "PurchaseHistoryProvided"

    pretty = run(
        "tail", REPLAYED_TOPIC, "--state-file", str(state_file), "--from-beginning", "--count", "1"
    )
    assert pretty.exit_code == 0, pretty.output
    assert "PurchaseHistoryProvided" in pretty.stdout
    assert correlation in pretty.stdout


def test_tail_of_an_unknown_topic_fails_clearly(stack: tuple[RunningFleet, Path]) -> None:
    _, state_file = stack
    result = run("tail", "no.such-topic", "--state-file", str(state_file), "--idle-timeout", "1")
    assert result.exit_code == 1
    assert "no topic" in result.output


# --- users ------------------------------------------------------------------------------------


def _register(http: httpx.Client, email: str) -> dict[str, Any]:
    body = {"name": "Cli", "email": email, "password": CLI_PASSWORD}
    response = http.post("/users", json=body)
    assert response.status_code == 201, response.text
    return dict(response.json())


def _login(http: httpx.Client, email: str) -> dict[str, Any]:
    response = http.post("/auth/login", json={"email": email, "password": CLI_PASSWORD})
    assert response.status_code == 200, response.text
    return dict(response.json())


async def _verification_url(broker: str, user_id: str) -> str:
    async def found() -> str | None:
        for record in await read_all(broker, UserRegistered.topic):
            data = Envelope.from_bytes(record.value).data
            if data.get("user_id") == user_id:
                return str(data["verification_url"])
        return None

    return str(await eventually(found, what="the admin's user.registered"))


def test_users_grant_and_revoke_admin(stack: tuple[RunningFleet, Path]) -> None:
    fleet, state_file = stack
    where = ("--state-file", str(state_file))
    target_email = f"cli-user-{uuid.uuid4().hex[:8]}@example.com"
    with httpx.Client(base_url=fleet.state["services"]["user_service"], timeout=10) as http:
        admin_id = _register(http, CLI_ADMIN)["user"]["id"]
        target = _register(http, target_email)
        url = asyncio.run(_verification_url(fleet.state["kafka"], admin_id))
        assert http.post("/auth/verify-email", json={"token": url.rsplit("/", 1)[1]}).is_success
        admin = _login(http, CLI_ADMIN)

        refused = run("users", "grant-admin", target_email, *where, fleet_token=target["token"])
        assert refused.exit_code == 1
        assert "FORBIDDEN" in refused.output
        granted = run("users", "grant-admin", target_email, *where, fleet_token=admin["token"])
        assert granted.exit_code == 0, granted.output
        assert "is now an admin" in granted.stdout
        # The target's sessions ended; the next login carries the role.
        assert (
            http.post("/auth/refresh", json={"refreshToken": target["refreshToken"]}).status_code
            == 401
        )
        assert "admin" in _roles(_login(http, target_email)["token"])

        revoked = run("users", "revoke-admin", target_email, *where, fleet_token=admin["token"])
        assert revoked.exit_code == 0, revoked.output
        assert "admin" not in _roles(_login(http, target_email)["token"])
        missing = run(
            "users", "grant-admin", "nobody@example.com", *where, fleet_token=admin["token"]
        )
        assert missing.exit_code == 1
        assert "NOT_FOUND" in missing.output


def _roles(token: str) -> tuple[str, ...]:
    return verify_token(token, secret=SECRET, issuer="fleet").roles
