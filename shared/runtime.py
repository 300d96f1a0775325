"""The parts a service runs with (database, publisher, consumers, outbox relay), started and
stopped in the right order from its FastAPI lifespan."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from shared.bus import EventConsumer, Handler
from shared.logging import get_logger
from shared.mongo import MongoStore
from shared.outbox import OutboxRelay
from shared.publisher import EventPublisher
from shared.settings import ServiceSettings

log = get_logger(__name__)


class ServiceRuntime:
    """Start: database, publisher, then consumers concurrently, then the outbox relay.
    Stop: the reverse, so in-flight work is committed and the producer flushed."""

    def __init__(self, settings: ServiceSettings) -> None:
        self.settings = settings
        self.mongo = MongoStore(settings.mongo_uri, settings.database_name)
        self.publisher = EventPublisher(settings)
        self.consumers: list[EventConsumer] = []
        self.relay: OutboxRelay | None = None

    @property
    def db(self) -> Any:
        """The service's MongoDB database."""
        return self.mongo.db

    def consume(self, group_id: str | None, handlers: dict[str, Handler]) -> EventConsumer:
        """Declare a consumer; it starts with the runtime."""
        consumer = EventConsumer(self.settings, self.publisher, handlers, group_id=group_id)
        self.consumers.append(consumer)
        return consumer

    def use_outbox(self, collections: list[Any]) -> OutboxRelay:
        """Relay the pending events of these collections."""
        self.relay = OutboxRelay(
            self.publisher,
            collections,
            self.settings.outbox_relay_interval_seconds,
            self.settings.outbox_flush_timeout_seconds,
            service=self.settings.service_name,
        )
        return self.relay

    async def start_publisher(self) -> None:
        """Connect the producer (consumers need it for dead letters)."""
        await self.publisher.start()

    async def start_background(self) -> None:
        """Start every consumer (joins run concurrently) and the relay."""
        await asyncio.gather(*(consumer.start() for consumer in self.consumers))
        if self.relay is not None:
            await self.relay.ensure_indexes()
            await self.relay.relay_once()
            self.relay.start()

    @asynccontextmanager
    async def running(self) -> AsyncIterator[ServiceRuntime]:
        """Start everything for the body of a lifespan; stop it all however the body ends."""
        try:
            await self.start_publisher()
            await self.start_background()
            yield self
        finally:
            await self.stop()

    async def stop(self) -> None:
        """Stop consuming, flush the outbox and producer, close the database."""
        await asyncio.gather(
            *(consumer.stop() for consumer in self.consumers), return_exceptions=True
        )
        if self.relay is not None:
            await self.relay.stop()
        await self.publisher.stop()
        await self.mongo.close()

    def install_readiness(self, app: FastAPI) -> None:
        """Readiness: the database and broker answer and every consumer is running."""
        app.state.readiness_checks.update(
            {
                "mongo": self.mongo.ping,
                "kafka": self.publisher.ready,
                "consumers": lambda: all(consumer.ready() for consumer in self.consumers),
            }
        )
