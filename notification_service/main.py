"""The notification service's app: its repository, outbox, mailer, background mail sender and
use cases, wired on the shared runtime."""

from __future__ import annotations

from fastapi import FastAPI

from notification_service import api
from notification_service.events import CONSUMER_GROUP, NotificationHandlers
from notification_service.mailer import Mailer
from notification_service.repository import NotificationRepository
from notification_service.sender import MailSender
from notification_service.service import Notifications
from notification_service.settings import NotificationSettings
from shared.links import LinkSigner
from shared.runtime import ServiceRuntime
from shared.service_app import create_service_app


def create_app(settings: NotificationSettings | None = None) -> FastAPI:
    """The FastAPI app; everything that connects somewhere starts in its lifespan."""
    settings = settings or NotificationSettings()

    def wire(runtime: ServiceRuntime) -> Notifications:
        repository = NotificationRepository(runtime.db)
        relay = runtime.use_outbox([repository.notifications])
        runtime.prepare(repository.ensure_indexes)
        # One signer for the pixel links the sender puts in mail and the route that checks them.
        links = LinkSigner(settings.jwt_secret.get_secret_value())
        mailer = Mailer(settings)
        sender = MailSender(settings, repository, mailer, links)
        # A worker stops first: the mail in hand is finished (or left leased) while the
        # database is open.
        runtime.run_worker(sender)
        runtime.ready_when("mail_sender", lambda: not mailer.enabled or sender.running())
        service = Notifications(
            settings=settings,
            repository=repository,
            publisher=runtime.publisher,
            relay=relay,
            links=links,
            mail_enabled=mailer.enabled,
            wake_sender=sender.wake,
        )
        runtime.consume(CONSUMER_GROUP, NotificationHandlers(service).handlers())
        return service

    return create_service_app(settings, api.router, wire)
