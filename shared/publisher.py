"""The event publisher on aiokafka: one long-lived producer per service, `acks=all`, every event
in the envelope with its correlation id and type in headers."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError, KafkaError
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_delay, wait_exponential

from shared import tracing
from shared.events.envelope import Envelope
from shared.events.models import Event
from shared.logging import current_correlation_id, get_logger, new_correlation_id
from shared.metrics import MESSAGES_PRODUCE_FAILED, MESSAGES_PRODUCED
from shared.settings import ServiceSettings
from shared.wakeups import Wakeups

log = get_logger(__name__)


class _NoMessageValues(logging.Filter):
    """aiokafka's producer logs every message's key and value at DEBUG; events carry emailed
    link tokens (verification, password reset), which no log line may hold at any level."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Sending (key=")


logging.getLogger("aiokafka.producer.producer").addFilter(_NoMessageValues())

CORRELATION_HEADER = "correlation_id"
EVENT_TYPE_HEADER = "event_type"
_MAX_RETRY_WAIT_SECONDS = 5.0


async def start_with_retry(client: AIOKafkaProducer | AIOKafkaConsumer, deadline: float) -> None:
    """Start a client, retrying with backoff while the broker is not answering yet."""
    async for attempt in AsyncRetrying(
        retry=retry_if_exception_type((KafkaError, OSError)),
        wait=wait_exponential(multiplier=0.2, max=_MAX_RETRY_WAIT_SECONDS),
        stop=stop_after_delay(deadline),
        reraise=True,
    ):
        with attempt:
            await client.start()


class MessageTooLarge(ValueError):
    """A message larger than KAFKA_MAX_MESSAGE_BYTES: refused before it reaches the broker
    (it would never fit, so it is the message's fault, not an outage)."""


def message_size(key: bytes | None, value: bytes | None, headers: list[tuple[str, bytes]]) -> int:
    """What a record weighs against the limit: key, value and every header name and value."""
    return (
        len(key or b"")
        + len(value or b"")
        + sum(len(name.encode()) + len(data) for name, data in headers)
    )


def headers_of(envelope: Envelope) -> list[tuple[str, bytes]]:
    """The headers every published envelope carries."""
    return [
        (CORRELATION_HEADER, envelope.correlation_id.encode()),
        (EVENT_TYPE_HEADER, envelope.type.encode()),
    ]


class EventPublisher:
    """Publishes events in the envelope, keyed by user id, `acks=all`."""

    def __init__(self, settings: ServiceSettings) -> None:
        self._settings = settings
        self._source = settings.service_name
        # Created in start(): an aiokafka client never started nor stopped warns when collected.
        self._client: AIOKafkaProducer | None = None
        self._started = False
        # Tells dozing consumers (this process's and others') which partitions were written.
        self.wakeups = Wakeups.from_settings(settings)

    @property
    def _producer(self) -> AIOKafkaProducer:
        if self._client is None:
            raise KafkaConnectionError("the publisher is not connected to the broker")
        return self._client

    async def start(self) -> None:
        """Connect, retrying until the broker answers or the startup timeout passes."""
        if self._client is None:
            self._client = AIOKafkaProducer(
                bootstrap_servers=self._settings.kafka_broker,
                acks="all",
                enable_idempotence=self._settings.kafka_idempotence,
                request_timeout_ms=self._settings.kafka_request_timeout_ms,
                client_id=self._settings.service_name,
            )
        await start_with_retry(self._client, self._settings.kafka_startup_timeout_seconds)
        self._started = True

    async def stop(self) -> None:
        """Flush what is buffered and disconnect (also a producer whose start never finished,
        which would otherwise leak its connections)."""
        self._started = False
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(KafkaError, OSError):
                await client.stop()
        await self.wakeups.aclose()

    def check_size(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        headers: list[tuple[str, bytes]],
    ) -> None:
        """Raise MessageTooLarge if the record exceeds KAFKA_MAX_MESSAGE_BYTES."""
        size = message_size(key, value, headers)
        if size > self._settings.kafka_max_message_bytes:
            raise MessageTooLarge(
                f"a {size}-byte message to {topic} exceeds KAFKA_MAX_MESSAGE_BYTES "
                f"({self._settings.kafka_max_message_bytes})"
            )

    def fits(self, event: Event) -> bool:
        """Whether the event, in a new envelope, is within the size limit."""
        envelope = self.envelope_for(event)
        size = message_size(event.key.encode(), envelope.to_bytes(), headers_of(envelope))
        return size <= self._settings.kafka_max_message_bytes

    def envelope_for(self, event: Event, correlation_id: str | None = None) -> Envelope:
        """Wrap a payload in a new envelope carrying the current correlation id."""
        return Envelope(
            type=event.event_type,
            source=self._source,
            correlation_id=correlation_id or current_correlation_id() or new_correlation_id(),
            data=event.model_dump(mode="json"),
        )

    async def publish(self, event: Event, correlation_id: str | None = None) -> Envelope:
        """Publish one event to its topic and wait for the broker's acknowledgement."""
        envelope = self.envelope_for(event, correlation_id)
        await self.publish_envelope(event.topic, event.key, envelope)
        return envelope

    async def publish_envelope(
        self,
        topic: str,
        key: str | None,
        envelope: Envelope,
        extra_headers: list[tuple[str, bytes]] | None = None,
    ) -> None:
        """Publish an envelope already built (outbox relay, dead letters)."""
        span, trace_headers = tracing.start_send(topic, envelope)
        try:
            await self.publish_raw(
                topic,
                key.encode() if key else None,
                envelope.to_bytes(),
                [*headers_of(envelope), *(extra_headers or []), *trace_headers],
            )
        except BaseException as exc:
            tracing.end_send(span, exc)
            raise
        tracing.end_send(span, None)

    async def publish_envelopes(
        self,
        messages: Sequence[tuple[str, str | None, Envelope]],
        traces: Sequence[Mapping[str, str] | None] | None = None,
        values: Sequence[bytes] | None = None,
    ) -> list[BaseException | None]:
        """Publish many (topic, key, envelope) at once: all are handed to the producer, which
        batches them, then every acknowledgement is awaited under one publish timeout.

        Returns, per message, None when the broker acknowledged it, else the error (a
        MessageTooLarge one is never sent): the caller keeps those for later (one awaited
        round trip per event would cap a consumer's rate). `traces`, per message, is the trace
        context stored with it (outbox), else the current; `values`, per message, its envelope
        already serialised (outbox), else it is serialised here.
        """
        if not self._started:
            return [KafkaConnectionError("the publisher is not connected to the broker")] * len(
                messages
            )
        unacknowledged = TimeoutError("not acknowledged within the publish timeout")
        results: list[BaseException | None] = [unacknowledged for _ in messages]
        timestamp_ms = int(time.time() * 1000)
        acks: list[asyncio.Future[Any]] = []
        # Which message each ack belongs to (one refused for its size is never sent).
        sent_indexes: list[int] = []
        too_large: dict[int, BaseException] = {}
        spans: dict[int, Any] = {}
        try:
            async with asyncio.timeout(self._settings.kafka_publish_timeout_seconds):
                for index, (topic, key, envelope) in enumerate(messages):
                    value = values[index] if values else envelope.to_bytes()
                    encoded_key = key.encode() if key else None
                    span, trace_headers = tracing.start_send(
                        topic, envelope, traces[index] if traces else None
                    )
                    spans[index] = span
                    headers = [*headers_of(envelope), *trace_headers]
                    try:
                        self.check_size(topic, encoded_key, value, headers)
                    except MessageTooLarge as exc:
                        too_large[index] = exc
                        continue
                    sent_indexes.append(index)
                    acks.append(
                        await self._producer.send(
                            topic,
                            value=value,
                            key=encoded_key,
                            headers=headers,
                            timestamp_ms=timestamp_ms,
                        )
                    )
                if acks:
                    # wait(), not gather(): at the timeout the messages are still on their way
                    # and must not be cancelled.
                    await asyncio.wait(acks)
        except (KafkaError, OSError) as exc:
            log.warning("batch publish cut short", error=str(exc), sent=len(acks))
        for index, ack in zip(sent_indexes, acks, strict=True):
            if ack.done() and not ack.cancelled():
                results[index] = ack.exception()
                if results[index] is None:
                    written = ack.result()
                    self.wakeups.written(written.topic, written.partition)
        for index, refused in too_large.items():
            results[index] = refused
        acked = dict(zip(sent_indexes, acks, strict=True))
        for index, span in spans.items():
            if span is not None:
                error = results[index]
                tracing.end_send(span, error if error is not None else acked[index].result())
        for (topic, _key, _envelope), error in zip(messages, results, strict=True):
            metric = MESSAGES_PRODUCED if error is None else MESSAGES_PRODUCE_FAILED
            metric.labels(self._source, topic).inc()
        return results

    async def publish_raw(
        self, topic: str, key: bytes | None, value: bytes | None, headers: list[tuple[str, bytes]]
    ) -> None:
        """Publish bytes as they are (dead letters keep the original bytes).

        Raises KafkaError when not connected and TimeoutError (an OSError) when the broker does
        not acknowledge within the publish timeout, so callers can keep the event for later;
        MessageTooLarge (before sending) for a record over KAFKA_MAX_MESSAGE_BYTES.
        """
        self.check_size(topic, key, value, headers)
        if not self._started:
            raise KafkaConnectionError("the publisher is not connected to the broker")
        try:
            async with asyncio.timeout(self._settings.kafka_publish_timeout_seconds):
                written = await self._producer.send_and_wait(
                    topic,
                    value=value,
                    key=key,
                    headers=headers,
                    timestamp_ms=int(time.time() * 1000),
                )
        except (KafkaError, OSError):
            MESSAGES_PRODUCE_FAILED.labels(self._source, topic).inc()
            raise
        MESSAGES_PRODUCED.labels(self._source, topic).inc()
        self.wakeups.written(written.topic, written.partition)

    async def ready(self) -> bool:
        """Whether the broker answers a metadata request."""
        if not self._started:
            return False
        try:
            await self._producer.client.fetch_all_metadata()
        except (KafkaError, OSError):
            return False
        return True
