"""The notification service app: the lifespan wires the database, mailer, consumer and relay."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from notification_service import api
from notification_service.events import CONSUMER_GROUP, NotificationHandlers
from notification_service.mailer import Mailer
from notification_service.repository import NotificationRepository
from notification_service.sender import MailSender
from notification_service.settings import NotificationSettings
from shared.http import install_common, service_telemetry
from shared.links import LinkSigner
from shared.runtime import ServiceRuntime


def create_app(settings: NotificationSettings | None = None) -> FastAPI:
    """The FastAPI app; everything that connects somewhere starts in its lifespan."""
    settings = settings or NotificationSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime = ServiceRuntime(settings)
        repository = NotificationRepository(runtime.db)
        relay = runtime.use_outbox([repository.notifications])
        mailer = Mailer(settings)
        sender = MailSender(settings, repository, mailer, app.state.links)
        handlers = NotificationHandlers(
            settings=settings,
            repository=repository,
            publisher=runtime.publisher,
            relay=relay,
            mailer=mailer,
            wake_sender=sender.wake,
        )
        app.state.sender = sender
        app.state.runtime = runtime
        app.state.repository = repository
        app.state.consumer = runtime.consume(CONSUMER_GROUP, handlers.handlers())
        runtime.install_readiness(app)
        app.state.readiness_checks["mail_sender"] = lambda: not mailer.enabled or sender.running()
        await repository.ensure_indexes()
        async with runtime.running():
            sender.start()
            try:
                yield
            finally:
                # The mail in hand is finished (or left leased) while the database is open.
                await sender.stop()

    app = FastAPI(title="notification_service", lifespan=lifespan, telemetry=service_telemetry())
    install_common(app, settings)
    app.state.links = LinkSigner(settings.jwt_secret.get_secret_value())
    app.include_router(api.router)
    return app
