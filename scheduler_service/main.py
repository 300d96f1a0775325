"""The scheduler service's app: database and publisher wired in the lifespan, ops routes.

Its features arrive in a later issue; this is the foundation they build on.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from scheduler_service.settings import SchedulerSettings
from shared.http import install_common
from shared.runtime import ServiceRuntime


def create_app(settings: SchedulerSettings | None = None) -> FastAPI:
    """The FastAPI app; `/ready` turns true once the database and the broker answer."""
    settings = settings or SchedulerSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # aiokafka clients must be created inside the running event loop.
        runtime = ServiceRuntime(settings)
        app.state.runtime = runtime
        runtime.install_readiness(app)
        async with runtime.running():
            yield

    app = FastAPI(title="scheduler_service", lifespan=lifespan)
    install_common(app, settings)
    return app
