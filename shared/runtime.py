"""The parts a service runs with (database, publisher, consumers, outbox relay, its own workers
and clients), started and stopped in the right order from its FastAPI lifespan."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, Protocol, TypeVar

from fastapi import FastAPI

from shared.bus import EventConsumer, Handler
from shared.logging import get_logger
from shared.mongo import MongoStore
from shared.outbox import OutboxRelay
from shared.publisher import EventPublisher
from shared.settings import ServiceSettings

log = get_logger(__name__)

ReadinessCheck = Callable[[], bool | Awaitable[bool]]


class Worker(Protocol):
    """A service's own background part (mail sender, scheduler): started once the consumers and
    relay run, stopped before them, so the work in hand finishes while the database is open."""

    def start(self) -> None: ...

    async def stop(self) -> None: ...


class Closable(Protocol):
    """A client the service opened (catalog, Redis): closed once everything else stopped."""

    async def aclose(self) -> None: ...


ClosableT = TypeVar("ClosableT", bound=Closable)


class LoopTask:
    """A coroutine run forever as a worker (a retry pass): cancelled on stop."""

    def __init__(self, run: Callable[[], Awaitable[None]], name: str) -> None:
        self._run = run
        self._name = name
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        async def run() -> None:
            await self._run()

        self._task = asyncio.create_task(run(), name=self._name)

    async def stop(self) -> None:
        if self._task is None:
            return
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


class ServiceRuntime:
    """Start: database, publisher, then consumers concurrently, then the outbox relay.
    Stop: the reverse, so in-flight work is committed and the producer flushed."""

    def __init__(self, settings: ServiceSettings) -> None:
        self.settings = settings
        self.mongo = MongoStore(settings.mongo_uri, settings.database_name)
        self.publisher = EventPublisher(settings)
        self.consumers: list[EventConsumer] = []
        self.relay: OutboxRelay | None = None
        self.workers: list[Worker] = []
        self.closables: list[Closable] = []
        self.preparations: list[Callable[[], Awaitable[object]]] = []
        self.readiness: dict[str, ReadinessCheck] = {}

    @property
    def db(self) -> Any:
        """The service's MongoDB database."""
        return self.mongo.db

    @property
    def outbox_relay(self) -> OutboxRelay:
        """The relay `use_outbox` declared, for the use cases that write outbox entries."""
        if self.relay is None:
            raise RuntimeError("this service declared no outbox (runtime.use_outbox in main.wire)")
        return self.relay

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

    def prepare(self, step: Callable[[], Awaitable[object]]) -> None:
        """Run this before anything starts (indexes, a migration), in declaration order."""
        self.preparations.append(step)

    def run_worker(self, worker: Worker) -> None:
        """Start this once consumers and relay run; stop it first."""
        self.workers.append(worker)

    def run_loop(self, run: Callable[[], Awaitable[None]], name: str) -> None:
        """Run this coroutine for the service's life (cancelled on stop)."""
        self.run_worker(LoopTask(run, name))

    def closing(self, client: ClosableT) -> ClosableT:
        """Close this client last, however the service ends; returns it."""
        self.closables.append(client)
        return client

    def ready_when(self, name: str, check: ReadinessCheck) -> None:
        """One more readiness check beside the database, broker and consumers."""
        self.readiness[name] = check

    async def prepare_all(self) -> None:
        """Run the declared preparations."""
        for step in self.preparations:
            await step()

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
        for worker in self.workers:
            worker.start()

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
        """Stop the workers and consumers, flush the outbox and producer, close the database,
        then the clients."""
        for worker in reversed(self.workers):
            await worker.stop()
        await asyncio.gather(
            *(consumer.stop() for consumer in self.consumers), return_exceptions=True
        )
        if self.relay is not None:
            await self.relay.stop()
        await self.publisher.stop()
        await self.mongo.close()
        await self.close_clients()

    async def close_clients(self) -> None:
        """Close the clients the service opened (also when it never started)."""
        clients, self.closables = self.closables, []
        for client in reversed(clients):
            await client.aclose()

    def install_readiness(self, app: FastAPI) -> None:
        """Readiness: the database and broker answer and every consumer is running."""
        app.state.readiness_checks.update(
            {
                "mongo": self.mongo.ping,
                "kafka": self.publisher.ready,
                "consumers": lambda: all(consumer.ready() for consumer in self.consumers),
                **self.readiness,
            }
        )
