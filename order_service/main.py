"""The order service's app: the lifespan wires the database, the outbox relay and the routes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from order_service import api
from order_service.repository import OrderRepository
from order_service.service import Orders
from order_service.settings import OrderSettings
from shared.catalog import CatalogClient
from shared.http import install_common, service_telemetry
from shared.runtime import ServiceRuntime


def create_app(settings: OrderSettings | None = None) -> FastAPI:
    """The FastAPI app; everything that connects somewhere starts in its lifespan."""
    settings = settings or OrderSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # aiokafka clients must be created inside the running event loop.
        runtime = ServiceRuntime(settings)
        repository = OrderRepository(runtime.db)
        runtime.use_outbox([repository.orders])
        app.state.runtime = runtime
        app.state.repository = repository
        catalog = CatalogClient.from_settings(settings)
        app.state.orders = Orders(settings, runtime, repository, catalog)
        runtime.install_readiness(app)
        await repository.ensure_indexes()
        try:
            async with runtime.running():
                yield
        finally:
            await catalog.aclose()

    app = FastAPI(title="order_service", lifespan=lifespan, telemetry=service_telemetry())
    install_common(app, settings)
    app.include_router(api.router)
    return app
