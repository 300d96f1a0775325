"""Overload is refused, not queued (issue 16): past MAX_CONCURRENT_REQUESTS a process answers
503 SERVICE_UNAVAILABLE at once (after at most a bounded wait), the requests it took are
answered as usual, and the probes are never refused. In-process over ASGI; requests are held
in a route by an event, so nothing depends on timing."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any

import httpx
import orjson
import pytest
from fastapi import FastAPI
from prometheus_client import REGISTRY

from graphql_gateway.main import create_app as create_gateway
from graphql_gateway.settings import GatewaySettings
from shared.http import AdmissionLimit, install_common, latency_limit_of
from shared.latency_limit import MIN_WINDOW_SAMPLES
from shared.settings import ServiceSettings
from tests.fixtures.apps import asgi_client
from tests.fixtures.parts import TEST_JWT_SECRET, eventually

HELD_PATH = "/held"
# Only so that a request wrongly queued fails the test instead of hanging it: no timing.
HANG_GUARD_SECONDS = 10


class Held:
    """A route that keeps every request it gets until `release` is set."""

    def __init__(self) -> None:
        self.entered = 0
        self.release = asyncio.Event()

    async def __call__(self) -> dict[str, str]:
        self.entered += 1
        await self.release.wait()
        return {"status": "done"}

    async def until_entered(self, count: int) -> None:
        await eventually(lambda: self.entered == count, interval=0.01, what=f"{count} held")


def service_app(**limits: Any) -> tuple[FastAPI, Held]:
    """A service app with the common layers, the admission `limits` and a holding route."""
    settings = ServiceSettings(
        _env_file=None, service_name="held_service", jwt_secret=TEST_JWT_SECRET, **limits
    )
    app = FastAPI()
    install_common(app, settings, {"always": lambda: True})
    held = Held()
    app.add_api_route(HELD_PATH, held, methods=["GET"])
    return app, held


def admission_of(app: FastAPI) -> AdmissionLimit:
    """The app's admission middleware (its stack is built on the first request)."""
    layer: Any = app.middleware_stack
    while not isinstance(layer, AdmissionLimit):
        layer = layer.app
    return layer


async def guarded(request: Awaitable[httpx.Response]) -> httpx.Response:
    return await asyncio.wait_for(request, HANG_GUARD_SECONDS)


def assert_refused_for_overload(answer: httpx.Response) -> None:
    assert answer.status_code == httpx.codes.SERVICE_UNAVAILABLE
    assert answer.headers["retry-after"] == "1"
    assert answer.json()["error"]["code"] == "SERVICE_UNAVAILABLE"
    assert answer.json()["error"]["message"]


@pytest.mark.parametrize("excess", [1, 3])
async def test_past_the_limit_exactly_the_excess_is_refused_at_once(excess: int) -> None:
    app, held = service_app(max_concurrent_requests=2, max_queued_requests=0)
    async with asgi_client(app, "held") as client:
        accepted = [asyncio.create_task(client.get(HELD_PATH)) for _ in range(2)]
        await held.until_entered(2)

        # Answered while the two taken are still held: refused, not queued behind them.
        refused = await asyncio.wait_for(
            asyncio.gather(*(client.get(HELD_PATH) for _ in range(excess))), HANG_GUARD_SECONDS
        )
        for answer in refused:
            assert_refused_for_overload(answer)
        assert held.entered == 2

        held.release.set()
        for answer in await asyncio.gather(*accepted):
            assert answer.status_code == httpx.codes.OK
            assert answer.json() == {"status": "done"}
        # The slots are given back: the next request is served.
        assert (await client.get(HELD_PATH)).status_code == httpx.codes.OK


async def test_the_probes_are_never_refused() -> None:
    app, held = service_app(max_concurrent_requests=1, max_queued_requests=0)
    async with asgi_client(app, "held") as client:
        taken = asyncio.create_task(client.get(HELD_PATH))
        await held.until_entered(1)
        assert_refused_for_overload(await guarded(client.get(HELD_PATH)))

        assert (await client.get("/health")).status_code == httpx.codes.OK
        assert (await client.get("/ready")).json()["ready"] is True
        assert (await client.get("/metrics")).status_code == httpx.codes.OK
        # Refusals are counted for the dashboards, and cost no request log line.
        metrics = (await client.get("/metrics")).text
        assert 'http_requests_refused_total{service="held_service"}' in metrics

        held.release.set()
        assert (await taken).status_code == httpx.codes.OK


async def test_a_waiting_request_takes_the_next_free_slot_and_a_full_queue_refuses() -> None:
    # A wait far longer than the test: the waiting request is served because a slot frees.
    app, held = service_app(
        max_concurrent_requests=1, max_queued_requests=1, max_queue_wait_seconds=120
    )
    async with asgi_client(app, "held") as client:
        first = asyncio.create_task(client.get(HELD_PATH))
        await held.until_entered(1)
        second = asyncio.create_task(client.get(HELD_PATH))
        admission = admission_of(app)
        await eventually(lambda: admission.waiting == 1, interval=0.01, what="one waiting")

        assert_refused_for_overload(await guarded(client.get(HELD_PATH)))

        held.release.set()
        assert (await first).status_code == httpx.codes.OK
        assert (await second).status_code == httpx.codes.OK
        assert held.entered == 2
        assert admission.waiting == 0


async def test_a_request_waits_no_longer_than_the_bound() -> None:
    app, held = service_app(
        max_concurrent_requests=1, max_queued_requests=5, max_queue_wait_seconds=0.01
    )
    async with asgi_client(app, "held") as client:
        taken = asyncio.create_task(client.get(HELD_PATH))
        await held.until_entered(1)

        # Nothing frees the slot: the waiting request is refused once its wait is over.
        assert_refused_for_overload(await guarded(client.get(HELD_PATH)))
        assert admission_of(app).waiting == 0

        held.release.set()
        assert (await taken).status_code == httpx.codes.OK


async def test_the_gateway_refuses_graphql_in_graphql_form() -> None:
    settings = GatewaySettings(
        _env_file=None,
        jwt_secret=TEST_JWT_SECRET,
        max_concurrent_requests=1,
        max_queued_requests=0,
        graphiql_enabled=False,
    )
    app = create_gateway(settings)
    held = Held()
    app.add_api_route(HELD_PATH, held, methods=["GET"])
    async with asgi_client(app, "gateway") as client:
        taken = asyncio.create_task(client.get(HELD_PATH))
        await held.until_entered(1)

        answer = await guarded(client.post("/graphql", json={"query": "{ getUserDetails { id } }"}))
        assert answer.status_code == httpx.codes.SERVICE_UNAVAILABLE
        assert answer.headers["retry-after"] == "1"
        assert answer.headers["content-type"].startswith("application/json")
        body = orjson.loads(answer.content)
        assert "data" not in body
        assert [error["extensions"]["code"] for error in body["errors"]] == ["SERVICE_UNAVAILABLE"]

        spec = await guarded(
            client.post(
                "/graphql",
                json={"query": "{ getUserDetails { id } }"},
                headers={"accept": "application/graphql-response+json"},
            )
        )
        assert spec.status_code == httpx.codes.SERVICE_UNAVAILABLE
        assert spec.headers["content-type"].startswith("application/graphql-response+json")

        # Its other paths answer the fleet's error body; its probe still answers.
        assert_refused_for_overload(await guarded(client.get("/verify-email/some-token")))
        assert (await client.get("/health")).status_code == httpx.codes.OK

        held.release.set()
        assert (await taken).status_code == httpx.codes.OK


class HeldAtLeast(Held):
    """Held until released, and at least `seconds` (a floor on each request's time, never a
    bound the test waits against)."""

    def __init__(self, seconds: float) -> None:
        super().__init__()
        self.seconds = seconds

    async def __call__(self) -> dict[str, str]:
        self.entered += 1
        await asyncio.gather(self.release.wait(), asyncio.sleep(self.seconds))
        return {"status": "done"}


def limit_gauge(service: str) -> float | None:
    return REGISTRY.get_sample_value("http_admission_limit", {"service": service})


async def test_requests_slower_than_the_target_shrink_the_limit_and_the_excess_is_refused() -> None:
    # Each request takes at least 20 ms against a 2 ms target: the first window of answers
    # (MIN_WINDOW_SAMPLES) halves the limit, however fast the machine.
    settings = ServiceSettings(
        _env_file=None,
        service_name="adaptive_service",
        jwt_secret=TEST_JWT_SECRET,
        max_concurrent_requests=MIN_WINDOW_SAMPLES * 2,
        min_concurrent_requests=2,
        max_queued_requests=0,
        target_request_seconds=0.002,
    )
    app = FastAPI()
    install_common(app, settings, {"always": lambda: True})
    held = HeldAtLeast(0.02)
    app.add_api_route(HELD_PATH, held, methods=["GET"])
    async with asgi_client(app, "adaptive") as client:
        held.release.set()
        answers = await guarded(
            asyncio.gather(*(client.get(HELD_PATH) for _ in range(MIN_WINDOW_SAMPLES)))
        )
        assert {answer.status_code for answer in answers} == {httpx.codes.OK}
        limit = admission_of(app).latency_limit
        assert limit is not None
        assert int(limit.limit) == MIN_WINDOW_SAMPLES
        assert limit_gauge("adaptive_service") == MIN_WINDOW_SAMPLES

        # Below MAX_CONCURRENT_REQUESTS, past the adapted limit: refused at once.
        held.release.clear()
        taken = [asyncio.create_task(client.get(HELD_PATH)) for _ in range(MIN_WINDOW_SAMPLES)]
        await held.until_entered(2 * MIN_WINDOW_SAMPLES)
        assert_refused_for_overload(await guarded(client.get(HELD_PATH)))
        held.release.set()
        assert {answer.status_code for answer in await guarded(asyncio.gather(*taken))} == {
            httpx.codes.OK
        }


def test_the_gateway_adapts_its_limit_and_the_services_keep_theirs_fixed() -> None:
    gateway = latency_limit_of(GatewaySettings(_env_file=None, jwt_secret=TEST_JWT_SECRET))
    assert gateway is not None
    assert (gateway.target_seconds, gateway.floor, gateway.ceiling) == (0.5, 16, 64)
    service = ServiceSettings(_env_file=None, jwt_secret=TEST_JWT_SECRET)
    assert latency_limit_of(service) is None
    # A floor above the ceiling is the ceiling: the limit is then fixed.
    narrow = latency_limit_of(
        ServiceSettings(
            _env_file=None,
            jwt_secret=TEST_JWT_SECRET,
            max_concurrent_requests=4,
            target_request_seconds=1,
        )
    )
    assert narrow is not None
    assert (narrow.floor, narrow.ceiling) == (4, 4)
