"""The fleet for end-to-end tests: started once per session exactly as `make run` starts it."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.fixtures.fleet import RunningFleet, launch_fleet

# Registered by a test and verified through its welcome email, this address gets the admin role
# (ADMIN_EMAILS of the fleet).
ADMIN_EMAIL = f"e2e-admin-{uuid.uuid4().hex[:12]}@example.com"


@contextmanager
def running_fleet(directory: Path, env: dict[str, str]) -> Iterator[RunningFleet]:
    """A fleet launched in `directory` with `env`, stopped (and anything left killed) after."""
    running = launch_fleet(directory, env=env)
    try:
        yield running
    finally:
        try:
            running.stop()
        finally:
            running.kill_everything()


@pytest.fixture(scope="session")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningFleet]:
    """`python -m devstack --free-ports --state-file ... --mail-dir ...`, all parts embedded;
    `ADMIN_EMAILS` names `ADMIN_EMAIL`."""
    with running_fleet(tmp_path_factory.mktemp("fleet"), {"ADMIN_EMAILS": ADMIN_EMAIL}) as running:
        yield running


@pytest.fixture(scope="session")
def admin_email() -> str:
    """The one admin address of the fleet (register it once per session to get an admin)."""
    return ADMIN_EMAIL
