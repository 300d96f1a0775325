"""The event bus on aiokafka: typed consumers that commit only after their handler has stored
its effect (the producer is shared/publisher.py).

Delivery is at least once: a handler that keeps failing is retried with exponential backoff,
then its message goes to `<topic>.dlq` with the error in headers and the partition moves on.
A message that is not a valid envelope (a poison message) goes to the DLQ at once.

A topic's handler may take a batch (`batched(...)`): each fetch of a partition is handed over
in one call and committed once; if the batch fails, its events are handled one by one through
the same retries and dead letters, so one bad event costs only itself.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import ConsumerStoppedError, KafkaError
from pydantic import ValidationError
from tenacity import AsyncRetrying, retry_if_exception_type, wait_exponential

from shared import tracing
from shared.events.envelope import Envelope, EnvelopeError
from shared.events.models import EVENT_TYPES
from shared.events.topics import dead_letter_topic
from shared.logging import correlation_scope, get_logger
from shared.metrics import (
    HANDLER_LATENCY,
    MESSAGES_CONSUMED,
    MESSAGES_FAILED,
)
from shared.publisher import EventPublisher, start_with_retry
from shared.settings import ServiceSettings

log = get_logger(__name__)

_MAX_RETRY_WAIT_SECONDS = 5.0
_POLL_TIMEOUT_MS = 500

Handler = Callable[[Envelope, Any], Awaitable[None]]
Received = tuple[Envelope, Any]
BatchHandle = Callable[[Sequence[Received]], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Batched:
    """A handler taking the valid events of one partition's fetch (at most `max_records`).

    Called with one event it is an ordinary `Handler` (the fallback when a batch failed), so it
    fits wherever a handler map is expected.
    """

    handle: BatchHandle
    max_records: int

    async def __call__(self, envelope: Envelope, event: Any) -> None:
        await self.handle([(envelope, event)])


def batched(handle: BatchHandle, *, max_records: int) -> Batched:
    """Declare `handle` as a batch handler for a topic of an EventConsumer."""
    return Batched(handle, max_records)


class EventConsumer:
    """Reads topics in a consumer group and hands each event to its typed handler.

    `group_id=None` makes a broadcast reader: every partition, from the end, no commits (each
    gateway replica uses it to hear about changes that make its cache stale).
    """

    def __init__(
        self,
        settings: ServiceSettings,
        publisher: EventPublisher,
        handlers: Mapping[str, Handler],
        *,
        group_id: str | None,
    ) -> None:
        self._settings = settings
        self._publisher = publisher
        self._handlers = dict(handlers)
        batch_sizes = [h.max_records for h in self._handlers.values() if isinstance(h, Batched)]
        # getmany's limit spans all partitions; without batch handlers it takes what is fetched.
        self._max_records = max(batch_sizes) if batch_sizes else None
        self._group_id = group_id
        self._service = settings.service_name
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=settings.kafka_broker,
            group_id=group_id,
            client_id=settings.service_name,
            enable_auto_commit=False,
            auto_offset_reset="earliest" if group_id else "latest",
            session_timeout_ms=settings.kafka_session_timeout_ms,
            fetch_max_wait_ms=settings.kafka_fetch_max_wait_ms,
            heartbeat_interval_ms=max(settings.kafka_session_timeout_ms // 3, 100),
            request_timeout_ms=max(
                settings.kafka_request_timeout_ms, 2 * settings.kafka_session_timeout_ms
            ),
        )
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()

    async def start(self) -> None:
        """Join the group and start consuming in the background."""
        self._consumer.subscribe(list(self._handlers))
        await start_with_retry(self._consumer, self._settings.kafka_startup_timeout_seconds)
        self._task = asyncio.create_task(self._run(), name=f"consumer:{self._group_id}")

    async def stop(self) -> None:
        """Finish the message in hand, commit, leave the group."""
        self._stopping.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(
                    self._task, timeout=self._settings.kafka_session_timeout_ms / 1000
                )
            except TimeoutError:
                self._task.cancel()
        await self._consumer.stop()

    def assigned(self) -> bool:
        """Whether this member has partitions (readiness; tests wait on it)."""
        return bool(self._consumer.assignment())

    def ready(self) -> bool:
        """Whether the consuming task is alive."""
        return self._task is not None and not self._task.done()

    async def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                batches = await self._consumer.getmany(
                    timeout_ms=_POLL_TIMEOUT_MS, max_records=self._max_records
                )
            except ConsumerStoppedError:
                return
            except KafkaError as exc:
                # The client reconnects by itself; a fetch error must not end the consumer.
                log.warning("fetch failed; retrying", group=self._group_id, error=str(exc))
                await asyncio.sleep(self._settings.kafka_retry_backoff_seconds)
                continue
            for tp, records in batches.items():
                if self._stopping.is_set():
                    # The rest is fetched again after a restart: nothing is committed past it.
                    return
                handler = self._handlers[tp.topic]
                if isinstance(handler, Batched):
                    await self._process_batch(tp, records, handler)
                    await self._commit(tp, records[-1].offset + 1)
                    continue
                for record in records:
                    if self._stopping.is_set():
                        return
                    await self._until_delivered(self._process, tp, record, handler)
                    await self._commit(tp, record.offset + 1)

    async def _commit(self, tp: TopicPartition, offset: int) -> bool:
        """Commit one partition's offset; False (logged) when the broker refused it.

        A refused commit is covered by the next one of the partition; if the partition moved,
        its new owner starts again from the last commit (at least once; handlers are
        idempotent). A broadcast reader (no group) commits nothing.
        """
        if not self._group_id:
            return True
        try:
            await self._consumer.commit({tp: offset})
        except (KafkaError, OSError) as exc:
            log.warning(
                "commit failed; the message will be delivered again",
                topic=tp.topic,
                partition=tp.partition,
                offset=offset,
                error=str(exc),
            )
            return False
        return True

    async def _until_delivered(self, step: Callable[..., Awaitable[Any]], *args: Any) -> Any:
        """Run a handling step; only a broker outage while dead-lettering repeats it."""
        async for attempt in AsyncRetrying(
            retry=retry_if_exception_type((KafkaError, OSError)),
            wait=wait_exponential(multiplier=0.5, max=_MAX_RETRY_WAIT_SECONDS),
            reraise=True,
        ):
            with attempt:
                return await step(*args)
        return None  # unreachable: AsyncRetrying either returns or re-raises

    async def _process_batch(
        self, tp: TopicPartition, records: Sequence[ConsumerRecord[Any, Any]], handler: Batched
    ) -> None:
        """Poison messages to the DLQ, the rest to the batch handler in one call; if that
        fails, each event alone through the retries and the DLQ."""
        valid: list[tuple[ConsumerRecord[Any, Any], Envelope, Any]] = []
        for record in records:
            parsed = await self._parse_or_dead_letter(tp, record)
            if parsed is not None:
                valid.append((record, *parsed))
        if not valid:
            return
        started = time.perf_counter()
        try:
            with tracing.processing(valid, self._group_id):
                await handler.handle([(envelope, payload) for _, envelope, payload in valid])
        except Exception:
            log.warning(
                "batch failed; handling its events one by one",
                topic=tp.topic,
                partition=tp.partition,
                count=len(valid),
                exc_info=True,
            )
            for record, envelope, payload in valid:
                await self._until_delivered(self._handle, tp, record, envelope, payload, handler)
            return
        # The histogram is per message: each event of the batch is charged its share.
        share = (time.perf_counter() - started) / len(valid)
        latency = HANDLER_LATENCY.labels(self._service, tp.topic)
        for _ in valid:
            latency.observe(share)
        MESSAGES_CONSUMED.labels(self._service, tp.topic, "ok").inc(len(valid))

    async def _process(
        self, tp: TopicPartition, record: ConsumerRecord[Any, Any], handler: Handler
    ) -> None:
        parsed = await self._parse_or_dead_letter(tp, record)
        if parsed is not None:
            await self._handle(tp, record, *parsed, handler)

    async def _parse_or_dead_letter(
        self, tp: TopicPartition, record: ConsumerRecord[Any, Any]
    ) -> tuple[Envelope, Any] | None:
        """The record's envelope and typed payload; None when it was poison (dead-lettered)."""
        try:
            envelope = Envelope.from_bytes(record.value)
            model = EVENT_TYPES.get(envelope.type)
            if model is None:
                raise EnvelopeError(f"unknown event type {envelope.type!r}")
            return envelope, model.model_validate(envelope.data)
        except (EnvelopeError, ValidationError) as exc:
            log.warning(
                "poison message",
                topic=tp.topic,
                partition=tp.partition,
                offset=record.offset,
                error=str(exc),
            )
            # Retried here, not around the parse: a retry scope per record costs more than the
            # parse itself.
            await self._until_delivered(
                partial(self._dead_letter, attempts=0, first_failure=datetime.now(UTC)),
                tp,
                record,
                exc,
            )
            return None

    async def _handle(
        self,
        tp: TopicPartition,
        record: ConsumerRecord[Any, Any],
        envelope: Envelope,
        payload: Any,
        handler: Handler,
    ) -> None:
        """Run the handler with retries; dead-letter the record when they run out."""
        with (
            correlation_scope(envelope.correlation_id),
            tracing.processing([(record, envelope)], self._group_id),
        ):
            first_failure: datetime | None = None
            attempts = 0
            started = time.perf_counter()
            try:
                async for attempt in AsyncRetrying(
                    wait=wait_exponential(
                        multiplier=self._settings.kafka_retry_backoff_seconds,
                        max=_MAX_RETRY_WAIT_SECONDS,
                    ),
                    stop=lambda state: (
                        state.attempt_number >= self._settings.kafka_handler_attempts
                    ),
                    reraise=True,
                ):
                    with attempt:
                        attempts = attempt.retry_state.attempt_number
                        try:
                            await handler(envelope, payload)
                        except Exception:
                            first_failure = first_failure or datetime.now(UTC)
                            MESSAGES_CONSUMED.labels(self._service, tp.topic, "retried").inc()
                            raise
            except Exception as exc:
                log.exception(
                    "handler failed; dead-lettering",
                    topic=tp.topic,
                    event_id=str(envelope.id),
                    attempts=attempts,
                )
                await self._dead_letter(
                    tp, record, exc, attempts=attempts, first_failure=first_failure
                )
                return
            finally:
                HANDLER_LATENCY.labels(self._service, tp.topic).observe(
                    time.perf_counter() - started
                )
            MESSAGES_CONSUMED.labels(self._service, tp.topic, "ok").inc()

    async def _dead_letter(
        self,
        tp: TopicPartition,
        record: ConsumerRecord[Any, Any],
        error: BaseException,
        *,
        attempts: int,
        first_failure: datetime | None,
    ) -> None:
        headers = list(record.headers or ())
        headers += [
            ("dlq_error", f"{type(error).__name__}: {error}"[:1000].encode()),
            ("dlq_attempts", str(attempts).encode()),
            ("dlq_original_topic", tp.topic.encode()),
            ("dlq_original_partition", str(tp.partition).encode()),
            ("dlq_original_offset", str(record.offset).encode()),
            ("dlq_first_failure", (first_failure or datetime.now(UTC)).isoformat().encode()),
            ("dlq_consumer_group", (self._group_id or "").encode()),
        ]
        await self._publisher.publish_raw(
            dead_letter_topic(tp.topic), record.key, record.value, headers
        )
        MESSAGES_CONSUMED.labels(self._service, tp.topic, "dead_lettered").inc()
        reason = "poison" if attempts == 0 else "handler"
        MESSAGES_FAILED.labels(self._service, tp.topic, reason).inc()
