"""The recommendation service's app: the lifespan wires the database, the catalog, the
consumer of orders and purchase histories, the outbox relay and the retry loop."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from recommendation_service import api
from recommendation_service.events import CONSUMER_GROUP, RecommendationFlow
from recommendation_service.repository import RecommendationRepository
from recommendation_service.settings import RecommendationSettings
from shared.catalog import CatalogClient
from shared.http import install_common, service_telemetry
from shared.runtime import ServiceRuntime


def create_app(settings: RecommendationSettings | None = None) -> FastAPI:
    """The FastAPI app; `/ready` turns true once the database and the broker answer."""
    settings = settings or RecommendationSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # aiokafka clients must be created inside the running event loop.
        runtime = ServiceRuntime(settings)
        repository = RecommendationRepository(runtime.db)
        relay = runtime.use_outbox([repository.requests])
        catalog = CatalogClient.from_settings(settings)
        flow = RecommendationFlow(settings, repository, runtime.publisher, relay, catalog)
        runtime.consume(CONSUMER_GROUP, flow.handlers())
        app.state.runtime = runtime
        app.state.flow = flow
        runtime.install_readiness(app)
        await repository.ensure_indexes()
        try:
            async with runtime.running():
                retries = asyncio.create_task(flow.run_retries(), name="recommendation-retries")
                try:
                    yield
                finally:
                    retries.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await retries
        finally:
            await catalog.aclose()

    app = FastAPI(title="recommendation_service", lifespan=lifespan, telemetry=service_telemetry())
    install_common(app, settings)
    app.include_router(api.router)
    return app
