"""The request line of every service (shared/http.py RequestContextMiddleware): a successful
request is a routine line (LOG_ROUTINE_PER_SECOND), a failed or slow one is always logged. In
process over ASGI, the budget on a fake clock."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import structlog
from fastapi import FastAPI

from shared.errors import NotFound
from shared.http import install_common
from shared.settings import ServiceSettings
from tests.fixtures.apps import asgi_client
from tests.fixtures.logs import FakeClock, budgeted, printed_json
from tests.fixtures.parts import TEST_JWT_SECRET

# The slow route takes longer than LOG_SLOW_REQUEST_MS by sleeping: the sleep is the request's
# work, not a wait for something to happen. The bound is far above what a fast request takes on a
# busy machine (at 1 ms, a fast request under the full suite on a slow machine was logged slow).
SLOW_REQUEST_MS = 250
SLOW_ROUTE_SECONDS = 0.3


def service_app() -> FastAPI:
    """A service app with the common layers and a fast, a failing and a slow route."""
    settings = ServiceSettings(
        _env_file=None,
        service_name="logged_service",
        jwt_secret=TEST_JWT_SECRET,
        log_slow_request_ms=SLOW_REQUEST_MS,
    )
    app = FastAPI()
    install_common(app, settings, {"always": lambda: True})

    @app.get("/fast")
    async def fast() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/missing")
    async def missing() -> dict[str, str]:
        raise NotFound("No such thing.")

    @app.get("/slow")
    async def slow() -> dict[str, str]:
        await asyncio.sleep(SLOW_ROUTE_SECONDS)
        return {"status": "ok"}

    return app


def request_lines(capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    return [line for line in printed_json(capsys) if line["event"] == "request"]


def configured(per_second: int) -> FakeClock:
    """JSON logs with this budget on a fake clock; loggers assembled on each use, so the
    middleware's module-level logger is not one cached under an earlier test's configuration."""
    clock = budgeted(per_second)
    structlog.configure(cache_logger_on_first_use=False)
    return clock


@pytest.mark.usefixtures("logging_restored")
async def test_successes_are_budgeted_failures_and_slow_requests_always_logged(
    capsys: pytest.CaptureFixture[str],
) -> None:
    clock = configured(per_second=1)
    async with asgi_client(service_app(), "logged") as client:
        for _ in range(3):
            assert (await client.get("/fast")).status_code == 200
            assert (await client.get("/missing")).status_code == 404
            assert (await client.get("/slow")).status_code == 200
        clock.now += 1
        answer = await client.get("/fast", headers={"x-correlation-id": "corr-fast"})
    lines = request_lines(capsys)
    fast = [line for line in lines if line["path"] == "/fast"]
    assert [line.get("suppressed") for line in fast] == [None, 2]
    assert fast[-1]["correlation_id"] == answer.headers["x-correlation-id"] == "corr-fast"
    failed = [line for line in lines if line["path"] == "/missing"]
    assert [(line["status"], line["level"]) for line in failed] == [(404, "info")] * 3
    slow = [line for line in lines if line["path"] == "/slow"]
    assert [(line["level"], line["slow"]) for line in slow] == [("warning", True)] * 3
    assert all(line["duration_ms"] >= SLOW_REQUEST_MS for line in slow)
    assert all("routine" not in line and line["correlation_id"] for line in lines)


@pytest.mark.usefixtures("logging_restored")
async def test_without_a_budget_every_request_is_logged(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configured(per_second=0)
    async with asgi_client(service_app(), "logged") as client:
        for _ in range(20):
            await client.get("/fast")
    assert len([line for line in request_lines(capsys) if line["path"] == "/fast"]) == 20


def requests_counted(route: str, status: str) -> float:
    from prometheus_client import REGISTRY

    value = REGISTRY.get_sample_value(
        "http_requests_total",
        {"service": "logged_service", "method": "GET", "route": route, "status": status},
    )
    return value or 0.0


async def test_every_request_is_counted_by_its_route_and_status() -> None:
    before = {key: requests_counted(*key) for key in (("/fast", "200"), ("/missing", "404"))}
    async with asgi_client(service_app(), "counted") as client:
        for _ in range(3):
            await client.get("/fast")
        await client.get("/missing")
    assert requests_counted("/fast", "200") == before["/fast", "200"] + 3
    assert requests_counted("/missing", "404") == before["/missing", "404"] + 1
