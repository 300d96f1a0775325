"""The user service's app: its repository, outbox, consumer and use cases, wired on the shared
runtime; password hashing bounded and forwarded client addresses trusted from its settings."""

from __future__ import annotations

from fastapi import FastAPI

from shared.auth import configure_hashing
from shared.http import trust_forwarded_for
from shared.runtime import ServiceRuntime
from shared.service_app import create_service_app
from user_service import api
from user_service.events import CONSUMER_GROUP, consumer_handlers
from user_service.limits import AuthLimits
from user_service.repository import UserRepository
from user_service.service import Users
from user_service.settings import UserSettings


def create_app(settings: UserSettings | None = None) -> FastAPI:
    """The FastAPI app; everything that connects somewhere starts in its lifespan."""
    settings = settings or UserSettings()

    def wire(runtime: ServiceRuntime) -> Users:
        repository = UserRepository(runtime.db)
        runtime.use_outbox([repository.users, repository.purchases])
        runtime.prepare(repository.ensure_indexes)
        runtime.prepare(repository.migrate_identity)
        users = Users(settings, runtime, repository, AuthLimits.from_settings(settings))
        runtime.consume(CONSUMER_GROUP, consumer_handlers(users))
        return users

    app = create_service_app(settings, api.router, wire)
    # Process-wide: the memory it protects is the process's.
    configure_hashing(
        max_concurrent=settings.password_hash_concurrency,
        max_waiting=settings.password_hash_queue,
    )
    # The client address of a request relayed by a trusted proxy (the gateway) is the one its
    # X-Forwarded-For names; anyone else's header is ignored (rate limits per address).
    trust_forwarded_for(app, settings.trusted_proxies)
    return app
