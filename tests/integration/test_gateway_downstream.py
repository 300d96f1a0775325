"""The gateway's pooled clients of the services over real TCP (aiohttp's pool under httpx's
API): answers, forwarded headers, the services' errors, and SERVICE_UNAVAILABLE for a service
that is down, fails or does not answer in time."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from devstack.parts import LOOPBACK, free_port
from graphql_gateway.auth import Credentials
from graphql_gateway.clients import ServiceClient
from graphql_gateway.settings import GatewaySettings
from shared.auth import Caller
from shared.errors import NotFound, ServiceUnavailable
from shared.logging import correlation_scope
from tests.fixtures.apps import served
from tests.fixtures.parts import TEST_JWT_SECRET


def fake_service(release: asyncio.Event) -> FastAPI:
    app = FastAPI()

    @app.post("/echo")
    async def echo(request: Request) -> JSONResponse:
        return JSONResponse(
            {
                "body": (await request.body()).decode(),
                "authorization": request.headers.get("authorization"),
                "correlation_id": request.headers.get("x-correlation-id"),
            }
        )

    @app.get("/missing")
    async def missing() -> JSONResponse:
        return JSONResponse(
            {"error": {"code": "NOT_FOUND", "message": "That order was not found."}}, 404
        )

    @app.get("/broken")
    async def broken() -> Response:
        return Response(b"oops", status_code=502)

    @app.get("/slow")
    async def slow() -> Response:
        await release.wait()
        return Response(b"{}")

    return app


def settings() -> GatewaySettings:
    return GatewaySettings(
        _env_file=None, jwt_secret=TEST_JWT_SECRET, downstream_timeout_seconds=0.5
    )


@pytest.fixture
async def service() -> AsyncIterator[tuple[ServiceClient, asyncio.Event]]:
    release = asyncio.Event()
    async with served(fake_service(release)) as url:
        client = ServiceClient("test service", url, settings())
        try:
            yield client, release
        finally:
            release.set()
            await client.aclose()


async def test_an_answer_comes_back_with_the_callers_headers_forwarded(
    service: tuple[ServiceClient, asyncio.Event],
) -> None:
    client, _ = service
    credentials = Credentials(Caller("u-1", "ada@example.com", ("customer",)), "abc")
    with correlation_scope("corr-1"):
        answers = await asyncio.gather(
            *(
                client.call("POST", "/echo", credentials=credentials, body={"n": n})
                for n in range(20)
            )
        )
    assert len(answers) == 20
    assert b'"authorization":"Bearer abc"' in answers[0]
    assert b'"correlation_id":"corr-1"' in answers[0]
    assert b'{\\"n\\":7}' in answers[7]


async def test_a_services_error_is_its_own_and_a_bare_5xx_is_unavailable(
    service: tuple[ServiceClient, asyncio.Event],
) -> None:
    client, _ = service
    with pytest.raises(NotFound, match="That order was not found"):
        await client.call("GET", "/missing")
    with pytest.raises(ServiceUnavailable):
        await client.call("GET", "/broken")


async def test_a_service_that_does_not_answer_in_time_is_unavailable(
    service: tuple[ServiceClient, asyncio.Event],
) -> None:
    client, _ = service
    with pytest.raises(ServiceUnavailable):
        await client.call("GET", "/slow")


async def test_a_service_that_is_down_is_unavailable() -> None:
    client = ServiceClient("test service", f"http://{LOOPBACK}:{free_port()}", settings())
    try:
        with pytest.raises(ServiceUnavailable):
            await client.call("GET", "/anything")
    finally:
        await client.aclose()


async def test_an_answered_call_leaves_nothing_to_the_garbage_collector(
    service: tuple[ServiceClient, asyncio.Event],
) -> None:
    client, _ = service
    await client.call("POST", "/echo", body={})  # the pooled connection exists from here on
    gc.collect()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        for _ in range(20):
            await client.call("POST", "/echo", body={})
        gc.collect()
        # The served app runs in this process too: only the client's own objects count.
        left = [o for o in gc.garbage if type(o).__module__.split(".")[0] in {"httpx", "aiohttp"}]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
    assert left == []
