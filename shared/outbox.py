"""Transactional outbox without transactions: an event is written inside the document whose
change it announces (one atomic single-document write), then a relay publishes it and removes
it. A broker outage at write time delays the event; it cannot lose it.

Publishing twice is possible (a crash between publish and removal) and harmless: every event
keeps its envelope id, and handlers are idempotent on it.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiokafka.errors import KafkaError

from shared.bus import EventPublisher
from shared.events.envelope import Envelope
from shared.events.models import Event
from shared.logging import get_logger

log = get_logger(__name__)

OUTBOX_FIELD = "outbox"
_RELAY_BATCH = 100


def outbox_entry(publisher: EventPublisher, event: Event) -> dict[str, Any]:
    """The pending-event record to embed in a document's `outbox` array."""
    envelope = publisher.envelope_for(event)
    return {
        "id": str(envelope.id),
        "topic": event.topic,
        "key": event.key,
        "envelope": envelope.to_bytes().decode(),
    }


class OutboxRelay:
    """Publishes the pending events of a set of collections and marks them sent."""

    def __init__(
        self,
        publisher: EventPublisher,
        collections: list[Any],
        interval_seconds: float,
        flush_timeout_seconds: float | None = None,
    ) -> None:
        self._publisher = publisher
        self._collections = collections
        self._interval = interval_seconds
        self._flush_timeout = flush_timeout_seconds
        self._task: asyncio.Task[None] | None = None

    async def flush_document(self, collection: Any, document_id: Any) -> bool:
        """Publish one document's pending events now; False leaves them to the relay.

        Bounded by the flush timeout: while the broker is away the caller (a request, a
        handler) goes on after it, and the relay delivers the events later.
        """
        try:
            async with asyncio.timeout(self._flush_timeout):
                document = await collection.find_one({"_id": document_id}, {OUTBOX_FIELD: 1})
                if not document:
                    return True
                return await self._publish_pending(collection, document)
        except TimeoutError:
            # A publish cut short may still reach the broker; the relay then sends it again
            # (same envelope id: consumers take it once).
            log.warning("outbox flush timed out; left to the relay", document_id=str(document_id))
            return False

    async def relay_once(self) -> int:
        """One pass over every collection; returns how many events were published."""
        published = 0
        for collection in self._collections:
            cursor = collection.find(
                {f"{OUTBOX_FIELD}.0": {"$exists": True}}, {OUTBOX_FIELD: 1}
            ).limit(_RELAY_BATCH)
            for document in await cursor.to_list(None):
                before = len(document.get(OUTBOX_FIELD, []))
                try:
                    done = await self._publish_pending(collection, document)
                except Exception:
                    # One broken entry must not hold back every other document's events.
                    log.exception("outbox entry not publishable", document_id=str(document["_id"]))
                    continue
                if done:
                    published += before
        return published

    async def _publish_pending(self, collection: Any, document: dict[str, Any]) -> bool:
        for entry in document.get(OUTBOX_FIELD, []):
            try:
                envelope = Envelope.model_validate_json(entry["envelope"])
                await self._publisher.publish_envelope(entry["topic"], entry["key"], envelope)
            except (KafkaError, OSError) as exc:
                log.warning("outbox publish deferred", event_id=entry["id"], error=str(exc))
                return False
            await collection.update_one(
                {"_id": document["_id"]}, {"$pull": {OUTBOX_FIELD: {"id": entry["id"]}}}
            )
        return True

    def start(self) -> None:
        """Relay in the background every interval."""
        self._task = asyncio.create_task(self._run(), name="outbox-relay")

    async def stop(self) -> None:
        """Stop the background relay after one last pass."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        try:
            await self.relay_once()
        except Exception:
            log.exception("final outbox pass failed; events stay pending")

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self.relay_once()
            except Exception:
                log.exception("outbox relay pass failed")
