"""Password hashing is bounded (issue 13): a flood of logins runs at most
PASSWORD_HASH_CONCURRENCY Argon2 verifications at once, queues at most PASSWORD_HASH_QUEUE more,
refuses the rest at once with SERVICE_UNAVAILABLE, and the service stays up. Concurrency is
counted inside the hasher, never inferred from time."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
import yaml
from fastapi import FastAPI
from pwdlib.hashers.argon2 import Argon2Hasher

import user_service.main as user_main
from shared import auth
from tests.fixtures.apps import asgi_client, own_consumer_group, running_service, service_settings
from tests.fixtures.parts import TEST_JWT_SECRET, eventually
from tests.security.conftest import PASSWORD, unique_email
from user_service.settings import UserSettings

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
CONCURRENCY = 2
QUEUE = 3
FLOOD = 20
# Only a safety net for a broken test: the test releases the hasher itself.
HELD_AT_MOST_SECONDS = 60


class CountingVerify:
    """Stands in for the Argon2 verification: counts how many run at once and holds each one
    until released, then verifies for real."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.running = 0
        self.most = 0
        self.started = 0
        self.release = threading.Event()
        self._lock = threading.Lock()

    def __call__(self, password: str, hashed: str) -> bool:
        with self._lock:
            self.running += 1
            self.started += 1
            self.most = max(self.most, self.running)
        try:
            self.release.wait(HELD_AT_MOST_SECONDS)
            return bool(self.real(password, hashed))
        finally:
            with self._lock:
                self.running -= 1


@pytest.fixture
def counting_verify(monkeypatch: pytest.MonkeyPatch) -> Iterator[CountingVerify]:
    counter = CountingVerify(auth._password_hash.verify)
    monkeypatch.setattr(auth._password_hash, "verify", counter)
    try:
        yield counter
    finally:
        counter.release.set()


@pytest_asyncio.fixture(loop_scope="session")
async def user_app(kafka_broker: str) -> AsyncIterator[FastAPI]:
    settings = service_settings(
        UserSettings,
        kafka_broker,
        password_hash_concurrency=CONCURRENCY,
        password_hash_queue=QUEUE,
    )
    with own_consumer_group(user_main, "hash"):
        try:
            async with running_service(user_main.create_app, settings) as running:
                yield running.app
        finally:
            # The bound is process-wide: give the other tests the default one back.
            defaults = UserSettings(_env_file=None, jwt_secret=TEST_JWT_SECRET)
            auth.configure_hashing(
                max_concurrent=defaults.password_hash_concurrency,
                max_waiting=defaults.password_hash_queue,
            )


async def test_a_login_flood_runs_at_most_n_hashes_and_refuses_the_rest_at_once(
    user_app: FastAPI, counting_verify: CountingVerify
) -> None:
    async with asgi_client(user_app, "users") as client:
        email = unique_email("hash")
        body = {"name": "Hash Tester", "email": email, "password": PASSWORD}
        assert (await client.post("/users", json=body)).status_code == 201

        async def login(address: str) -> httpx.Response:
            credentials = {"email": address, "password": PASSWORD}
            return await client.post("/auth/login", json=credentials)

        # Random emails, as an attacker would send: each costs one verification.
        flood = [asyncio.create_task(login(unique_email("flood"))) for _ in range(FLOOD)]
        refused_count = FLOOD - CONCURRENCY - QUEUE
        await eventually(
            lambda: (
                sum(task.done() for task in flood) == refused_count
                and counting_verify.running == CONCURRENCY
            ),
            what="the flood past the bound refused while the first hashes are held",
        )
        refused = [task.result() for task in flood if task.done()]
        assert {r.status_code for r in refused} == {503}
        assert refused[0].json()["error"]["code"] == "SERVICE_UNAVAILABLE"
        assert counting_verify.started == CONCURRENCY  # the queued ones have not started
        # The service still answers while its hashing is saturated.
        assert (await client.get("/health")).status_code == 200

        counting_verify.release.set()
        answered = await asyncio.gather(*flood)
        statuses = sorted(r.status_code for r in answered)
        assert statuses == [401] * (CONCURRENCY + QUEUE) + [503] * refused_count
        assert counting_verify.most == CONCURRENCY
        # The owner can still log in once the flood is over.
        assert (await login(email)).status_code == 200
    assert counting_verify.most == CONCURRENCY


def _mebibytes(quantity: str) -> int:
    units = {"Mi": 1, "Gi": 1024}
    return int(quantity[:-2]) * units[quantity[-2:]]


def test_the_default_bound_fits_well_inside_the_k8s_memory_limit() -> None:
    """The default concurrency times Argon2's memory is at most a third of the user service's
    memory limit, and the manifest sets the same number beside that limit."""
    assert Argon2Hasher()._hasher.memory_cost * 1024 == auth.ARGON2_MEMORY_BYTES
    documents = yaml.safe_load_all((ROOT / "deploy/k8s/user-service.yaml").read_text())
    deployment = next(d for d in documents if d["kind"] == "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    limit = _mebibytes(container["resources"]["limits"]["memory"])
    env = {item["name"]: item["value"] for item in container["env"]}
    default = UserSettings.model_fields["password_hash_concurrency"].default
    assert int(env["PASSWORD_HASH_CONCURRENCY"]) == default
    assert default * auth.ARGON2_MEMORY_BYTES // 2**20 <= limit // 3
