"""The event bus on aiokafka: typed consumers that commit only after their handler has stored
its effect (the producer is shared/publisher.py).

Delivery is at least once. A message that can never succeed (not a valid envelope, invalid,
permanently refused: shared.failures) goes to `<topic>.dlq` at once with the error in headers.
Any other failure holds the message's partition and retries it with exponential backoff, in
order, up to a horizon (shared/redelivery.py); only then is it dead-lettered and the partition
moves on. The other partitions go on meanwhile. A dead letter names the consumer group that
failed it; a replay marks it for that group, and every other group skips it.

A consumer with nothing to do for KAFKA_IDLE_AFTER_SECONDS dozes: its partitions are paused
(no fetch is sent) until a publisher's wake-up names one of them or KAFKA_IDLE_POLL_SECONDS
pass (shared/wakeups.py says why and what it guarantees).

A topic's handler may take a batch (`batched(...)`): each fetch of a partition is handed over
in one call; if the batch fails, its events are handled one by one through the same retries and
dead letters, so one bad event costs only itself.

Offsets are committed after their events were handled, never before, and in one request for
every partition: at most once per KAFKA_COMMIT_INTERVAL_MS while records keep coming, and at
once when a fetch comes back empty (caught up), before dozing, when a partition is revoked and
at stop. A commit per event, then per fetch, was a broker round trip each (the commit was a
tenth of an idle-ish consumer's work and the broker's under load). A crash delivers again what
was handled since the last commit; handlers are idempotent.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, ConsumerRecord, TopicPartition
from aiokafka.errors import ConsumerStoppedError, KafkaError
from pydantic import ValidationError
from tenacity import AsyncRetrying, retry_if_exception_type, wait_exponential

from shared import tracing
from shared.events.envelope import Envelope, EnvelopeError
from shared.events.models import EVENT_TYPES
from shared.events.topics import dead_letter_topic
from shared.failures import Failure, classify
from shared.logging import correlation_scope, get_logger
from shared.metrics import (
    HANDLER_LATENCY,
    MESSAGES_CONSUMED,
    MESSAGES_FAILED,
)
from shared.publisher import EventPublisher, start_with_retry
from shared.redelivery import ParkedPartitions, replayed_for_another_group
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


class _ForgetRevoked(ConsumerRebalanceListener):
    """A partition that moves away is committed as far as it was handled (its next reader
    starts there) and no longer waited on here; the commit is never past a parked record."""

    def __init__(
        self,
        parked: ParkedPartitions,
        commit_handled: Callable[[Any], Awaitable[None]],
    ) -> None:
        self._parked = parked
        self._commit_handled = commit_handled

    async def on_partitions_revoked(self, revoked: Any) -> None:
        await self._commit_handled(revoked)
        self._parked.forget(revoked)

    async def on_partitions_assigned(self, assigned: Any) -> None:
        self._parked.forget(assigned)


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
        self._parked = ParkedPartitions(
            backoff_seconds=settings.kafka_retry_backoff_seconds,
            backoff_max_seconds=settings.kafka_retry_backoff_max_seconds,
            horizon_seconds=settings.kafka_retry_horizon_seconds,
        )
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self._idle_after = settings.kafka_idle_after_seconds
        self._doze_at = time.monotonic() + self._idle_after
        self._dozing: frozenset[TopicPartition] = frozenset()
        self._woken = asyncio.Event()
        # After an idle poll found nothing: one fetch's worth of waiting, then doze again.
        self._quick_look_ms = max(1, 3 * settings.kafka_fetch_max_wait_ms)
        self._quick_look = False
        # Handled but not yet committed: partition -> the offset to commit (the next to read).
        self._handled: dict[TopicPartition, int] = {}
        self._commit_interval = settings.kafka_commit_interval_ms / 1000
        self._commit_due = 0.0

    async def start(self) -> None:
        """Join the group and start consuming in the background."""
        self._consumer.subscribe(
            list(self._handlers), listener=_ForgetRevoked(self._parked, self._commit_revoked)
        )
        await start_with_retry(self._consumer, self._settings.kafka_startup_timeout_seconds)
        if self._idle_after:
            self._publisher.wakeups.listen(self._wake_if_dozing)
        self._task = asyncio.create_task(self._run(), name=f"consumer:{self._group_id}")

    async def stop(self) -> None:
        """Finish the message in hand, commit, leave the group."""
        self._stopping.set()
        self._woken.set()
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

    def dozing(self) -> bool:
        """Whether the consumer is paused for lack of records (tests, metrics)."""
        return bool(self._dozing)

    def _poll_timeout_ms(self) -> int:
        """Poll no longer than until the next parked partition is due."""
        limit = self._quick_look_ms if self._quick_look else _POLL_TIMEOUT_MS
        due_in = self._parked.seconds_to_next()
        if due_in is None:
            return limit
        return max(1, min(limit, int(due_in * 1000)))

    def _wake_if_dozing(self, topic: str, partition: int) -> None:
        # The whole assignment, not only what was paused: a rebalance may have given it more.
        if self._dozing and TopicPartition(topic, partition) in self._consumer.assignment():
            self._woken.set()

    def _may_doze(self) -> bool:
        return (
            self._idle_after > 0
            and time.monotonic() >= self._doze_at
            and self._parked.seconds_to_next() is None
            and not self._stopping.is_set()
        )

    async def _doze(self) -> None:
        """Pause every partition until a wake-up names one or the idle poll is due; then
        look once (a wake-up keeps it awake for the idle time)."""
        self._dozing = frozenset(self._consumer.assignment() - self._consumer.paused())
        if not self._dozing:
            self._doze_at = time.monotonic() + self._idle_after
            return
        self._woken.clear()
        self._consumer.pause(*self._dozing)
        try:
            await asyncio.wait_for(
                self._woken.wait(), timeout=self._settings.kafka_idle_poll_seconds
            )
            self._quick_look = False
            self._doze_at = time.monotonic() + self._idle_after
        except TimeoutError:
            self._quick_look = True
            self._doze_at = time.monotonic() + self._quick_look_ms / 1000
        finally:
            still_assigned = self._dozing & self._consumer.assignment()
            self._dozing = frozenset()
            if still_assigned:
                self._consumer.resume(*still_assigned)

    def _resume_due(self) -> None:
        for tp in self._parked.due():
            if tp in self._consumer.assignment():
                self._consumer.resume(tp)

    async def _run(self) -> None:
        await self._consume()
        await self._commit_handled()  # stopping: what was handled, before leaving the group

    async def _consume(self) -> None:
        while not self._stopping.is_set():
            if self._may_doze():
                await self._commit_handled()  # a doze may last: nothing waits on it
                await self._doze()
                continue
            self._resume_due()
            try:
                batches = await self._consumer.getmany(
                    timeout_ms=self._poll_timeout_ms(), max_records=self._max_records
                )
            except ConsumerStoppedError:
                self._handled.clear()  # stopped under us: nothing can be committed any more
                return
            except KafkaError as exc:
                # The client reconnects by itself; a fetch error must not end the consumer.
                log.warning("fetch failed; retrying", group=self._group_id, error=str(exc))
                await asyncio.sleep(self._settings.kafka_retry_backoff_seconds)
                continue
            if not batches:
                await self._commit_handled()  # caught up: the group's lag says so at once
                continue
            self._quick_look = False
            self._doze_at = time.monotonic() + self._idle_after
            for tp, records in batches.items():
                if self._stopping.is_set():
                    # The rest is fetched again after a restart: nothing is committed past it.
                    return
                parked_at = self._parked.waiting(tp)
                if parked_at is not None:
                    # Fetched before it was parked: rewind, it is fetched again when due.
                    self._consumer.seek(tp, parked_at)
                    continue
                handler = self._handlers[tp.topic]
                if isinstance(handler, Batched):
                    handled_to = await self._process_batch(tp, records, handler)
                else:
                    handled_to = await self._process_records(tp, records, handler)
                if handled_to > records[0].offset:
                    self._handled[tp] = handled_to
            if time.monotonic() >= self._commit_due:
                await self._commit_handled()

    async def _process_records(
        self, tp: TopicPartition, records: Sequence[ConsumerRecord[Any, Any]], handler: Handler
    ) -> int:
        """Each record of a fetch in order; the offset up to which they are handled (committed
        later with the other partitions'). Stops at a parked record and at a stop: nothing
        behind them is handled, so the commit never passes them."""
        handled_to = int(records[0].offset)
        for record in records:
            if self._stopping.is_set():
                break
            if not await self._until_delivered(self._process, tp, record, handler):
                break  # parked: nothing behind it is handled before it
            handled_to = int(record.offset) + 1
        return handled_to

    async def _commit_handled(self) -> None:
        """Commit every partition as far as it was handled, in one request. A partition that
        moved meanwhile is left to its new owner (it starts from the last commit)."""
        if not self._handled:
            return  # the interval runs from the last commit: after a quiet spell, at once
        self._commit_due = time.monotonic() + self._commit_interval
        assigned = self._consumer.assignment()
        offsets = {tp: offset for tp, offset in self._handled.items() if tp in assigned}
        self._handled = {}
        if offsets and not await self._commit(offsets):
            # Tried again with the next commit, unless a later offset was handled meanwhile
            # (or the partition has moved by then: the filter above drops it).
            for tp, offset in offsets.items():
                self._handled[tp] = max(offset, self._handled.get(tp, offset))

    async def _commit_revoked(self, revoked: Any) -> None:
        """Commit the revoked partitions as far as they were handled (the rebalance waits)."""
        offsets = {tp: self._handled.pop(tp) for tp in revoked if tp in self._handled}
        if offsets:
            await self._commit(offsets)

    async def _commit(self, offsets: dict[TopicPartition, int]) -> bool:
        """Commit those offsets; False (logged) when the broker refused them.

        If a partition moved meanwhile, its new owner starts again from the last commit (at
        least once; handlers are idempotent). A broadcast reader (no group) commits nothing.
        """
        if not self._group_id:
            return True
        try:
            await self._consumer.commit(offsets)
        except (KafkaError, OSError) as exc:
            log.warning(
                "commit failed; the messages will be delivered again",
                partitions=sorted(f"{tp.topic}:{tp.partition}" for tp in offsets),
                error=str(exc),
            )
            return False
        return True

    async def _until_delivered(self, step: Callable[..., Awaitable[Any]], *args: Any) -> Any:
        """Run a handling step; only a broker outage while dead-lettering repeats it (the
        handler's own failures are caught in `_handle`). The first try is a plain call: the
        retrying machinery's objects refer to each other, so one per event left the garbage
        collector a dozen objects a message to find (most of the gateway's garbage)."""
        try:
            return await step(*args)
        except (KafkaError, OSError):
            pass  # the broker is away: the retries below wait for it
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
    ) -> int:
        """The valid events to the batch handler in one call, poison messages to the DLQ; if
        the batch fails, each event alone through the retries and the DLQ.

        Returns the offset up to which the fetch is done (to commit): past the last record, or
        the offset of the record its partition is parked on.
        """
        parsed = [(record, self._parse(record)) for record in records]
        valid = [
            (record, *result)
            for record, result in parsed
            if not isinstance(result, Exception)
            and not replayed_for_another_group(record.headers, self._group_id)
        ]
        if valid:
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
                for record, result in parsed:
                    if not await self._until_delivered(
                        self._process_parsed, tp, record, result, handler
                    ):
                        return int(record.offset)
                return int(records[-1].offset) + 1
            # The histogram is per message: each event of the batch is charged its share.
            share = (time.perf_counter() - started) / len(valid)
            latency = HANDLER_LATENCY.labels(self._service, tp.topic)
            for _ in valid:
                latency.observe(share)
            MESSAGES_CONSUMED.labels(self._service, tp.topic, "ok").inc(len(valid))
            self._parked.done(tp, int(valid[-1][0].offset))
        for record, result in parsed:
            if isinstance(result, Exception):
                await self._until_delivered(self._dead_letter_poison, tp, record, result)
        return int(records[-1].offset) + 1

    async def _process(
        self, tp: TopicPartition, record: ConsumerRecord[Any, Any], handler: Handler
    ) -> bool:
        """Handle one record; False when its partition is parked on it (retry later)."""
        return await self._process_parsed(tp, record, self._parse(record), handler)

    async def _process_parsed(
        self,
        tp: TopicPartition,
        record: ConsumerRecord[Any, Any],
        parsed: tuple[Envelope, Any] | Exception,
        handler: Handler,
    ) -> bool:
        if replayed_for_another_group(record.headers, self._group_id):
            return True  # a dead letter replayed for the group that failed it, not this one
        if isinstance(parsed, Exception):
            await self._dead_letter_poison(tp, record, parsed)
            return True
        return await self._handle(tp, record, *parsed, handler)

    def _parse(self, record: ConsumerRecord[Any, Any]) -> tuple[Envelope, Any] | Exception:
        """The record's envelope and typed payload, or why it is poison."""
        try:
            envelope = Envelope.from_bytes(record.value)
            model = EVENT_TYPES.get(envelope.type)
            if model is None:
                raise EnvelopeError(f"unknown event type {envelope.type!r}")
            return envelope, model.model_validate(envelope.data)
        except (EnvelopeError, ValidationError) as exc:
            return exc

    async def _dead_letter_poison(
        self, tp: TopicPartition, record: ConsumerRecord[Any, Any], error: Exception
    ) -> None:
        log.warning(
            "poison message",
            topic=tp.topic,
            partition=tp.partition,
            offset=record.offset,
            error=str(error),
        )
        await self._dead_letter(
            tp, record, error, attempts=0, first_failure=datetime.now(UTC), failure="poison"
        )

    async def _handle(
        self,
        tp: TopicPartition,
        record: ConsumerRecord[Any, Any],
        envelope: Envelope,
        payload: Any,
        handler: Handler,
    ) -> bool:
        """Run the handler once; on failure dead-letter the record (permanent, or failing past
        the horizon) or park its partition. False when parked."""
        with (
            correlation_scope(envelope.correlation_id),
            tracing.processing([(record, envelope)], self._group_id),
        ):
            started = time.perf_counter()
            try:
                await handler(envelope, payload)
            except Exception as exc:
                return await self._failed(tp, record, envelope, exc)
            finally:
                HANDLER_LATENCY.labels(self._service, tp.topic).observe(
                    time.perf_counter() - started
                )
            self._parked.done(tp, record.offset)
            MESSAGES_CONSUMED.labels(self._service, tp.topic, "ok").inc()
            return True

    async def _failed(
        self,
        tp: TopicPartition,
        record: ConsumerRecord[Any, Any],
        envelope: Envelope,
        error: Exception,
    ) -> bool:
        """Dead-letter a permanent failure, or one past the horizon; park a transient one."""
        failure = classify(error)
        if failure is Failure.PERMANENT:
            attempts, first_failure = self._parked.attempts(tp, record.offset)
            attempts, retry_in = attempts + 1, None
            why = "handler refused the message for good; dead-lettering"
        else:
            verdict = self._parked.failed(tp, record.offset)
            attempts, first_failure, retry_in = (
                verdict.attempts,
                verdict.first_failure,
                verdict.retry_in,
            )
            why = "handler kept failing past the retry horizon; dead-lettering"
        if retry_in is None:
            log.error(
                why, topic=tp.topic, event_id=str(envelope.id), attempts=attempts, exc_info=error
            )
            await self._dead_letter(
                tp,
                record,
                error,
                attempts=attempts,
                first_failure=first_failure,
                failure=failure.value,
            )
            self._parked.done(tp, record.offset)
            return True
        MESSAGES_CONSUMED.labels(self._service, tp.topic, "retried").inc()
        log.warning(
            "handler failed; its partition waits to retry it",
            topic=tp.topic,
            partition=tp.partition,
            offset=record.offset,
            event_id=str(envelope.id),
            attempts=attempts,
            retry_in=retry_in,
            error=f"{type(error).__name__}: {error}",
        )
        if tp in self._consumer.assignment():
            self._consumer.pause(tp)
            self._consumer.seek(tp, record.offset)
        # Else the partition moved away meanwhile: its new reader starts at the last commit.
        return False

    async def _dead_letter(
        self,
        tp: TopicPartition,
        record: ConsumerRecord[Any, Any],
        error: BaseException,
        *,
        attempts: int,
        first_failure: datetime | None,
        failure: str,
    ) -> None:
        headers = list(record.headers or ())
        headers += [
            ("dlq_error", f"{type(error).__name__}: {error}"[:1000].encode()),
            ("dlq_failure", failure.encode()),
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
