"""Transactional outbox without transactions: an event is written inside the document whose
change it announces (one atomic single-document write), then a relay publishes it and removes
it. A broker outage at write time delays the event; it cannot lose it.

Publishing twice is possible (a crash between publish and removal) and harmless: every event
keeps its envelope id, and handlers are idempotent on it. Events are published in batches (all
sent, then all acknowledgements awaited once) and cleared in one write per batch. An entry that
cannot be read back as an envelope is moved to `outbox_unpublishable` in its document (logged
once, kept for a person, never retried).

The envelope is serialised once, when its entry is made; what is published is that stored text
as it is. A writer flushing the entries it has just made (`flush_entries`) publishes the
envelopes they still hold; only entries read back from the store are parsed (for the headers,
and to set aside what is broken).
"""

from __future__ import annotations

import asyncio
import copy
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from pydantic import ValidationError
from pymongo import ASCENDING, UpdateOne

from shared import tracing
from shared.events.envelope import Envelope
from shared.events.models import Event
from shared.logging import get_logger
from shared.metrics import OUTBOX_OLDEST_AGE, OUTBOX_PENDING
from shared.publisher import EventPublisher, MessageTooLarge, headers_of

log = get_logger(__name__)

OUTBOX_FIELD = "outbox"
PENDING_INDEX = "pending_events"
# Where an entry that cannot be published is set aside (kept, not retried).
UNPUBLISHABLE_FIELD = "outbox_unpublishable"
_FIRST_PENDING = f"{OUTBOX_FIELD}.0"
_RELAY_BATCH = 500

Pending = Mapping[Any, Sequence[dict[str, Any]]]


class OutboxEntry(dict[str, Any]):
    """A pending-event record as `outbox_entry` made it: to the store a plain mapping, to the
    writer that flushes it the envelope it was made from as well (published without parsing
    the stored text back). A copy the store makes, or an entry read back, is a plain dict."""

    __slots__ = ("envelope",)

    def __init__(self, record: Mapping[str, Any], envelope: Envelope) -> None:
        super().__init__(record)
        self.envelope = envelope

    def __deepcopy__(self, memo: dict[int, Any]) -> dict[str, Any]:
        # What an in-process store keeps: the record alone.
        return copy.deepcopy(dict(self), memo)


def outbox_entry(
    publisher: EventPublisher, event: Event, event_id: uuid.UUID | None = None
) -> dict[str, Any]:
    """The pending-event record to embed in a document's `outbox` array (`event_id`: an id
    derived from what the event is about, so that writing it twice publishes the same event);
    MessageTooLarge if it could never be published (refused before anything is stored). It is
    an `OutboxEntry`: typed as the plain record the repositories store."""
    envelope = publisher.envelope_for(event)
    if event_id is not None:
        envelope = envelope.model_copy(update={"id": event_id})
    value = envelope.to_bytes()
    publisher.check_size(event.topic, event.key.encode(), value, headers_of(envelope))
    record = {
        "id": str(envelope.id),
        "topic": event.topic,
        "key": event.key,
        "envelope": value.decode(),
        # Epoch seconds (a float round-trips exactly): the relay leaves young entries to the
        # writer that is flushing them, instead of publishing them a second time.
        "queued_at": time.time(),
    }
    # Whoever publishes it later (this request's flush or the relay) continues this trace.
    tracing.remember(record)
    return OutboxEntry(record, envelope)


def in_hand(
    stored: Sequence[dict[str, Any]], made: Sequence[dict[str, Any]]
) -> list[dict[str, Any]]:
    """A document's pending entries as a write returned them, oldest first, with the ones this
    writer has just made (`outbox_entry`) in their place: those are published as they are."""
    mine = {entry["id"]: entry for entry in made}
    return [mine.get(entry["id"], entry) for entry in stored]


class OutboxRelay:
    """Publishes the pending events of a set of collections and marks them sent.

    A sweep finds pending events through a sparse index on the first outbox entry
    (`ensure_indexes`), so it reads only documents that have some, in MongoDB and in the
    in-memory store alike; it runs at the first pass and then every `sweep_interval_seconds`
    (None: every pass), for what a crashed process left behind. What a flush of this process
    could not publish is remembered and retried by id at every pass, whatever the sweep.
    """

    def __init__(
        self,
        publisher: EventPublisher,
        collections: list[Any],
        interval_seconds: float,
        flush_timeout_seconds: float | None = None,
        sweep_interval_seconds: float | None = None,
        service: str = "",
    ) -> None:
        self._service = service
        self._publisher = publisher
        self._collections = collections
        self._interval = interval_seconds
        self._flush_timeout = flush_timeout_seconds
        self._sweep_interval = sweep_interval_seconds
        self._swept_at: float | None = None
        # collection full name -> (collection, ids of documents whose flush here failed)
        self._unflushed: dict[str, tuple[Any, set[Any]]] = {}
        self._task: asyncio.Task[None] | None = None

    async def ensure_indexes(self) -> None:
        """Index "has a pending event" in every relayed collection (before the first sweep)."""
        for collection in self._collections:
            await collection.create_index(
                [(_FIRST_PENDING, ASCENDING)], sparse=True, name=PENDING_INDEX
            )

    async def flush_document(self, collection: Any, document_id: Any) -> bool:
        """Publish one document's pending events now; False leaves them to the relay.

        Bounded by the flush timeout: while the broker is away the caller (a request, a
        handler) goes on after it, and the relay delivers the events later.
        """

        async def stored() -> Pending:
            document = await collection.find_one({"_id": document_id}, {OUTBOX_FIELD: 1})
            return {document_id: document.get(OUTBOX_FIELD, [])} if document else {}

        return await self._flush(collection, [document_id], stored)

    async def flush_entries(self, collection: Any, pending: Pending) -> bool:
        """Publish entries just written with their documents (document id -> entries, still in
        hand: no read back), awaiting all acknowledgements at once, and clear them in one
        write; False leaves what was not published to the relay."""

        async def in_hand() -> Pending:
            return pending

        return await self._flush(collection, list(pending), in_hand)

    async def _flush(
        self, collection: Any, document_ids: list[Any], load: Callable[[], Awaitable[Pending]]
    ) -> bool:
        unsent: set[Any] = set(document_ids)  # until the publish says otherwise
        try:
            async with asyncio.timeout(self._flush_timeout):
                _sent, unsent = await self._publish_and_clear(collection, await load())
        except TimeoutError:
            # A publish cut short may still reach the broker; the relay then sends it again
            # (same envelope id: consumers take it once).
            log.warning("outbox flush timed out; left to the relay", documents=len(document_ids))
        finally:
            self._remember(collection, unsent)
        return not unsent

    async def relay_once(self, *, include_young: bool = False) -> int:
        """Retry the flushes that failed here, sweep every collection when a sweep is due;
        returns how many events were published.

        A sweep leaves entries younger than the flush timeout to the writer flushing them,
        unless `include_young` (at shutdown, when no writer is left; it also forces a sweep).
        """
        published = await self._retry_unflushed()
        now = time.monotonic()
        if (
            include_young
            or self._swept_at is None
            or self._sweep_interval is None
            or now - self._swept_at >= self._sweep_interval
        ):
            self._swept_at = now
            published += await self._sweep(0 if include_young else self._flush_timeout or 0)
        return published

    async def _retry_unflushed(self) -> int:
        unflushed, self._unflushed = self._unflushed, {}
        published = 0
        for collection, document_ids in unflushed.values():
            unsent: set[Any] = document_ids
            try:
                documents = await collection.find(
                    {"_id": {"$in": list(document_ids)}}, {OUTBOX_FIELD: 1}
                ).to_list(None)
                # Nobody else is flushing these any more, however young.
                sent, unsent = await self._publish_and_clear(collection, self._due(documents, 0))
                published += sent
            finally:
                self._remember(collection, unsent)
        return published

    async def _sweep(self, grace_seconds: float) -> int:
        published = 0
        for collection in self._collections:
            after: Any = None
            while True:
                # Paged by _id: a page of entries not due yet (young, or refused by the broker)
                # must not hide the documents behind it.
                query: dict[str, Any] = {_FIRST_PENDING: {"$exists": True}}
                if after is not None:
                    query["_id"] = {"$gt": after}
                cursor = (
                    collection.find(query, {OUTBOX_FIELD: 1}).sort("_id", 1).limit(_RELAY_BATCH)
                )
                documents = await cursor.to_list(None)
                due = self._due(documents, grace_seconds)
                sent, unsent = await self._publish_and_clear(collection, due)
                self._remember(collection, unsent)
                published += sent
                if len(documents) < _RELAY_BATCH or (unsent and not sent):
                    break  # the last page, or the broker is not taking anything now
                after = documents[-1]["_id"]
        return published

    def _remember(self, collection: Any, document_ids: set[Any]) -> None:
        if document_ids:
            entry = self._unflushed.setdefault(collection.full_name, (collection, set()))
            entry[1].update(document_ids)

    @staticmethod
    def _due(
        documents: list[dict[str, Any]], grace_seconds: float
    ) -> dict[Any, list[dict[str, Any]]]:
        """Entries old enough that the writer's own flush has given up on them (or ended)."""
        cutoff = time.time() - grace_seconds
        due = {
            document["_id"]: [
                entry
                for entry in document.get(OUTBOX_FIELD, [])
                if entry.get("queued_at", 0) <= cutoff
            ]
            for document in documents
        }
        return {document_id: entries for document_id, entries in due.items() if entries}

    async def _publish_and_clear(self, collection: Any, pending: Pending) -> tuple[int, set[Any]]:
        """Publish the entries together, then pull the acknowledged ones; returns how many were
        published and the documents left with entries the broker did not take."""
        messages: list[tuple[str, str | None, Envelope]] = []
        values: list[bytes] = []
        traces: list[dict[str, str] | None] = []
        owners: list[tuple[Any, str]] = []
        kept: list[dict[str, Any]] = []
        for document_id, entries in pending.items():
            for entry in entries:
                try:
                    # The stored text is the envelope serialised: it is published as it is.
                    value = entry["envelope"].encode()
                    envelope = (
                        entry.envelope
                        if isinstance(entry, OutboxEntry)
                        else Envelope.model_validate_json(value)
                    )
                except (AttributeError, KeyError, TypeError, ValidationError):
                    # One broken entry must not hold back every other event, nor be tried at
                    # every pass: it is set aside in the document, for a person to look at.
                    log.exception("outbox entry not publishable", document_id=str(document_id))
                    await self._set_aside(collection, document_id, entry)
                    continue
                messages.append((entry["topic"], entry["key"], envelope))
                values.append(value)
                traces.append(entry.get(tracing.TRACE_FIELD))
                owners.append((document_id, entry["id"]))
                kept.append(entry)
        if not messages:
            return 0, set()
        outcomes = await self._publisher.publish_envelopes(messages, traces, values)
        for (document_id, _), entry, error in zip(owners, kept, outcomes, strict=True):
            if isinstance(error, MessageTooLarge):
                # Queued under a larger KAFKA_MAX_MESSAGE_BYTES: it will never fit.
                log.error("outbox entry too large to publish", document_id=str(document_id))
                await self._set_aside(collection, document_id, entry)
        failures = [error for error in outcomes if error is not None]
        if failures:
            log.warning("outbox publish deferred", count=len(failures), error=str(failures[0]))
        acknowledged = [owner for owner, error in zip(owners, outcomes, strict=True) if not error]
        if acknowledged:
            await _pull_entries(collection, acknowledged)
        unsent = {owner[0] for owner, error in zip(owners, outcomes, strict=True) if error}
        return len(acknowledged), unsent

    async def _set_aside(self, collection: Any, document_id: Any, entry: dict[str, Any]) -> None:
        await collection.update_one(
            {"_id": document_id},
            {"$pull": {OUTBOX_FIELD: entry}, "$push": {UNPUBLISHABLE_FIELD: entry}},
        )

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
            await self.relay_once(include_young=True)
        except Exception:
            log.exception("final outbox pass failed; events stay pending")

    async def measure(self) -> None:
        """Export, per collection, how many documents hold pending events and the age of the
        oldest (the first entry of a document is its oldest); two indexed reads."""
        pending = {_FIRST_PENDING: {"$exists": True}}
        for collection in self._collections:
            count = await collection.count_documents(pending)
            oldest = await (
                collection.find(pending, {OUTBOX_FIELD: 1})
                .sort(f"{_FIRST_PENDING}.queued_at", ASCENDING)
                .limit(1)
                .to_list(None)
            )
            queued = [e.get("queued_at", 0) for d in oldest for e in d.get(OUTBOX_FIELD, [])]
            age = max(0.0, time.time() - min(queued)) if queued else 0.0
            labels = (self._service, collection.name)
            OUTBOX_PENDING.labels(*labels).set(count)
            OUTBOX_OLDEST_AGE.labels(*labels).set(age)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                with tracing.untraced():
                    await self.relay_once()
                    await self.measure()
            except Exception:
                log.exception("outbox relay pass failed")


async def _pull_entries(collection: Any, acknowledged: list[tuple[Any, str]]) -> None:
    """Remove the acknowledged entries from their documents in one bulk write, each document
    pulling only its own entry ids: one `$pull` of every id of the batch made each document
    match its entries against the whole list (quadratic in the batch in the in-process store,
    most of a 500-event batch of the notification consumer)."""
    by_document: dict[Any, list[str]] = {}
    for document_id, entry_id in acknowledged:
        by_document.setdefault(document_id, []).append(entry_id)
    await collection.bulk_write(
        [
            UpdateOne({"_id": document_id}, {"$pull": {OUTBOX_FIELD: {"id": {"$in": entry_ids}}}})
            for document_id, entry_ids in by_document.items()
        ],
        ordered=False,
    )
