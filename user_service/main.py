"""The user service app: the lifespan wires the database, the outbox relay and the routes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from shared.auth import configure_hashing
from shared.http import install_common, service_telemetry, trust_forwarded_for
from shared.runtime import ServiceRuntime
from user_service import api
from user_service.events import CONSUMER_GROUP, consumer_handlers
from user_service.identity import Identity
from user_service.limits import AuthLimits
from user_service.repository import UserRepository
from user_service.service import UserAccounts
from user_service.settings import UserSettings


def create_app(settings: UserSettings | None = None) -> FastAPI:
    """The FastAPI app; everything that connects somewhere starts in its lifespan."""
    settings = settings or UserSettings()
    # Process-wide: the memory it protects is the process's.
    configure_hashing(
        max_concurrent=settings.password_hash_concurrency,
        max_waiting=settings.password_hash_queue,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime = ServiceRuntime(settings)
        repository = UserRepository(runtime.db)
        runtime.use_outbox([repository.users, repository.purchases.collection])
        handlers = consumer_handlers(settings, runtime, repository)
        if handlers:
            runtime.consume(CONSUMER_GROUP, handlers)
        app.state.runtime = runtime
        app.state.repository = repository
        app.state.accounts = UserAccounts(
            settings, runtime, repository, AuthLimits.from_settings(settings)
        )
        app.state.identity = Identity(app.state.accounts)
        runtime.install_readiness(app)
        await repository.ensure_indexes()
        await repository.migrate_identity()
        async with runtime.running():
            yield

    app = FastAPI(title="user_service", lifespan=lifespan, telemetry=service_telemetry())
    install_common(app, settings)
    # The client address of a request relayed by a trusted proxy (the gateway) is the one its
    # X-Forwarded-For names; anyone else's header is ignored (rate limits per address).
    trust_forwarded_for(app, settings.trusted_proxies)
    app.include_router(api.router)
    return app
