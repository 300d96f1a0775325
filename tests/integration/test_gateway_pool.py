"""The gateway's calls to a service never queue without bound (issue 16): a call that finds
every pooled connection busy waits at most DOWNSTREAM_POOL_TIMEOUT_SECONDS, then is
SERVICE_UNAVAILABLE. Against a stand-in served by uvicorn on loopback that holds its requests
until released."""

from __future__ import annotations

import asyncio

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from graphql_gateway.clients import ServiceClient
from graphql_gateway.settings import GatewaySettings
from shared.errors import ServiceUnavailable
from tests.fixtures.apps import served
from tests.fixtures.parts import TEST_JWT_SECRET

# Only so that a call wrongly left waiting fails the test instead of hanging it: no timing.
HANG_GUARD_SECONDS = 10


async def test_a_call_finding_the_pool_busy_gives_up_as_service_unavailable() -> None:
    entered = asyncio.Event()
    release = asyncio.Event()

    async def held(_: Request) -> JSONResponse:
        entered.set()
        await release.wait()
        return JSONResponse({"status": "done"})

    settings = GatewaySettings(
        _env_file=None,
        jwt_secret=TEST_JWT_SECRET,
        downstream_max_connections=1,
        # Far past the guard: only the pool's own bound can end the second call in time.
        downstream_timeout_seconds=HANG_GUARD_SECONDS * 6,
        downstream_pool_timeout_seconds=0.05,
    )
    async with served(Starlette(routes=[Route("/held", held)])) as url:
        client = ServiceClient("order service", url, settings)
        try:
            first = asyncio.create_task(client.call("GET", "/held"))
            await asyncio.wait_for(entered.wait(), HANG_GUARD_SECONDS)

            # The one connection is busy until released: this call gives up, not queues.
            with pytest.raises(ServiceUnavailable, match="The order service is unavailable"):
                await asyncio.wait_for(client.call("GET", "/held"), HANG_GUARD_SECONDS)

            release.set()
            assert await first == b'{"status":"done"}'
        finally:
            release.set()
            await client.aclose()
