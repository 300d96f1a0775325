"""Topic provisioning: create the registry's topics in the background until the broker has them,
and tell readiness once every one exists."""

from __future__ import annotations

import asyncio
import contextlib

from kafka_admin_service.settings import KafkaAdminSettings
from shared.kafka_topics import ensure_topics, missing_topics
from shared.logging import get_logger

log = get_logger(__name__)


class TopicProvisioner:
    """Runs `ensure_topics` until it succeeds (the broker may come up after this service)."""

    def __init__(self, settings: KafkaAdminSettings) -> None:
        self._settings = settings
        self._task: asyncio.Task[None] | None = None
        self.created = asyncio.Event()

    def start(self) -> None:
        """Start provisioning in the background, so `/health` answers at once."""
        self._task = asyncio.create_task(self._provision(), name="topic-provisioning")

    async def stop(self) -> None:
        """Give up provisioning (shutdown)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _provision(self) -> None:
        settings = self._settings
        while True:
            try:
                # Creating an existing topic is answered "already exists", which ensure_topics
                # takes as success: running this twice, or beside another admin, is harmless.
                names = await ensure_topics(
                    settings.kafka_broker,
                    timeout_seconds=settings.topic_creation_attempt_seconds,
                    request_timeout_ms=settings.kafka_request_timeout_ms,
                )
            except Exception as exc:
                log.warning(
                    "topics not created yet; retrying",
                    broker=settings.kafka_broker,
                    error=f"{type(exc).__name__}: {exc}",
                )
                await asyncio.sleep(settings.topic_creation_pause_seconds)
                continue
            log.info("every registry topic exists", topics=len(names))
            self.created.set()
            return


class TopicsReadiness:
    """Readiness check: every registry topic is listed by the broker (remembered once true)."""

    def __init__(self, settings: KafkaAdminSettings) -> None:
        self._settings = settings
        self._ready = False

    async def __call__(self) -> bool:
        if self._ready:
            return True
        missing = await missing_topics(
            self._settings.kafka_broker, request_timeout_ms=self._settings.topic_check_timeout_ms
        )
        self._ready = not missing
        return self._ready
