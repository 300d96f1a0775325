"""One app factory for every data service: the service says how its parts are wired, this
builds the FastAPI app whose lifespan prepares, starts and stops them in order.

A service's `main.py` is its `wire` function: build the repository and the use cases from the
runtime, declare the outbox, consumers, workers and clients on it, and return the use cases;
`api.py` takes them back through `ServiceDep`-style `Annotated` dependencies on `service_of`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, FastAPI, Request

from shared.http import install_common, service_telemetry
from shared.runtime import ServiceRuntime
from shared.settings import ServiceSettings

Wiring = Callable[[ServiceRuntime], object]


def create_service_app(settings: ServiceSettings, router: APIRouter, wire: Wiring) -> FastAPI:
    """The service's app: `wire(runtime)` runs in the lifespan (aiokafka clients must be made
    inside the running loop) and its result is the use cases the routes call."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime = ServiceRuntime(settings)
        app.state.runtime = runtime
        try:
            app.state.service = wire(runtime)
            runtime.install_readiness(app)
            await runtime.prepare_all()
        except BaseException:
            await runtime.close_clients()
            raise
        async with runtime.running():
            yield

    app = FastAPI(title=settings.service_name, lifespan=lifespan, telemetry=service_telemetry())
    install_common(app, settings)
    app.include_router(router)
    return app


async def service_of(request: Request) -> Any:
    """The use cases `wire` returned (async: a plain function would cost a worker-thread hop
    per request). Each `api.py` names it with its type: `Annotated[Orders, Depends(service_of)]`."""
    return request.app.state.service
