"""`fleet demo` (what `make demo` runs) twice against a fleet started as `make run` starts it with
ADMIN_EMAILS unset: the users, their orders and the admin exist once; the printed export line
carries an admin's token that the admin-only API takes; the second run logs in instead."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from fleet.demo import CUSTOMERS, DEMO_ADMIN_EMAIL, DEMO_PASSWORD, token_roles
from shared.errors import ErrorCode
from tests.e2e.conftest import running_fleet
from tests.fixtures.fleet import REPO_ROOT, RunningFleet

pytestmark = pytest.mark.e2e

DEMO_TIMEOUT_SECONDS = 120
EXPORT_LINE = re.compile(r"^export FLEET_TOKEN=(\S+)$", re.MULTILINE)
LOGIN = """
mutation Login($email: String!, $password: String!) {
  login(email: $email, password: $password) { token user { id emailVerified } }
}
"""
REGISTER = """
mutation Register($email: String!, $password: String!) {
  registerUser(name: "Again", email: $email, password: $password) { token }
}
"""
ORDERS = "query { orders { id status } }"
NOTIFICATIONS = "query { getUserNotifications(unreadOnly: false) { id type } }"


@pytest.fixture(scope="module")
def demo_fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningFleet]:
    """A fleet of its own: ADMIN_EMAILS empty, so the stack names the demo's admin."""
    with running_fleet(tmp_path_factory.mktemp("demo-fleet"), {"ADMIN_EMAILS": ""}) as running:
        yield running


def run_demo(fleet: RunningFleet, *args: str) -> subprocess.CompletedProcess[str]:
    state_file = Path(fleet.log_path).parent / "stack-state.json"
    # The state file names the fleet: no URL of the caller's environment may win over it.
    environment = {k: v for k, v in os.environ.items() if k not in ("FLEET_URL", "FLEET_MAIL_URL")}
    return subprocess.run(  # noqa: S603 - our own CLI
        [sys.executable, "-m", "fleet", "demo", "--state-file", str(state_file), *args],
        cwd=REPO_ROOT,
        env={**environment, "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=DEMO_TIMEOUT_SECONDS,
        check=False,
    )


@pytest.fixture(scope="module")
def demo_runs(demo_fleet: RunningFleet) -> tuple[str, dict[str, Any]]:
    """The first run's printed output and the second run's JSON."""
    first = run_demo(demo_fleet)
    assert first.returncode == 0, first.stdout + first.stderr
    second = run_demo(demo_fleet, "--json")
    assert second.returncode == 0, second.stdout + second.stderr
    return first.stdout, json.loads(second.stdout)


def graphql(
    fleet: RunningFleet, query: str, variables: dict[str, Any] | None = None, token: str = ""
) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = httpx.post(
        fleet.graphql, json={"query": query, "variables": variables or {}}, headers=headers
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def login(fleet: RunningFleet, address: str) -> dict[str, Any]:
    body = graphql(fleet, LOGIN, {"email": address, "password": DEMO_PASSWORD})
    assert not body.get("errors"), body
    answer: dict[str, Any] = body["data"]["login"]
    return answer


def test_the_first_run_prints_logins_and_an_admins_export_line(
    demo_runs: tuple[str, dict[str, Any]],
) -> None:
    printed, _ = demo_runs
    for user in (*CUSTOMERS, DEMO_ADMIN_EMAIL):
        address = user if isinstance(user, str) else user.email
        assert address in printed
    assert DEMO_PASSWORD in printed
    exports = EXPORT_LINE.findall(printed)
    assert len(exports) == 1, printed
    assert "admin" in token_roles(exports[0])


def test_the_second_run_logs_in_and_places_nothing_new(
    demo_fleet: RunningFleet, demo_runs: tuple[str, dict[str, Any]]
) -> None:
    _, second = demo_runs
    accounts = {account["email"]: account for account in second["accounts"]}
    assert set(accounts) == {user.email for user in CUSTOMERS} | {DEMO_ADMIN_EMAIL}
    assert not any(account["registered"] for account in accounts.values())
    assert second["export"].startswith("export FLEET_TOKEN=")
    for user in CUSTOMERS:
        # One account an address: registering it again conflicts.
        again = graphql(demo_fleet, REGISTER, {"email": user.email, "password": DEMO_PASSWORD})
        assert again["errors"][0]["extensions"]["code"] == ErrorCode.CONFLICT
        token = login(demo_fleet, user.email)["token"]
        orders = graphql(demo_fleet, ORDERS, token=token)["data"]["orders"]
        # Each demo order once, whatever the number of runs: the idempotency keys.
        assert len(orders) == len(user.orders), orders
        assert {o["id"] for o in orders} == {o["id"] for o in accounts[user.email]["orders"]}
        notifications = graphql(demo_fleet, NOTIFICATIONS, token=token)
        assert notifications["data"]["getUserNotifications"], notifications
        assert accounts[user.email]["notifications"] >= 1


def test_the_admin_is_verified_and_its_token_opens_the_admin_api(
    demo_fleet: RunningFleet, demo_runs: tuple[str, dict[str, Any]]
) -> None:
    printed, second = demo_runs
    admin = login(demo_fleet, DEMO_ADMIN_EMAIL)
    assert admin["user"]["emailVerified"] is True
    admin_api = demo_fleet.state["services"]["kafka_admin_service"]
    for export in (EXPORT_LINE.findall(printed)[0], second["export"].split("=", 1)[1]):
        topics = httpx.get(f"{admin_api}/api/topics", headers={"Authorization": f"Bearer {export}"})
        assert topics.status_code == 200, topics.text
        assert topics.json(), "no topics"
    customer = login(demo_fleet, CUSTOMERS[0].email)["token"]
    refused = httpx.get(f"{admin_api}/api/topics", headers={"Authorization": f"Bearer {customer}"})
    assert refused.status_code == 403, refused.text
