"""The fleet for end-to-end tests: started once per session exactly as `make run` starts it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fixtures.fleet import RunningFleet, launch_fleet


@pytest.fixture(scope="session")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningFleet]:
    """`python -m shared.stack --free-ports --state-file ... --mail-dir ...`, all parts embedded."""
    running = launch_fleet(tmp_path_factory.mktemp("fleet"))
    try:
        yield running
    finally:
        try:
            running.stop()
        finally:
            running.kill_everything()
