"""Read a topic from the broker (no consumer group, nothing committed) and hand over each
message as an envelope, or as raw text when it is not one."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from shared.events.envelope import Envelope, EnvelopeError


class TopicNotFound(RuntimeError):
    """The broker does not know the topic."""


@dataclass(frozen=True)
class TailedMessage:
    """One record: where it was, its key and headers, and its envelope (or why not)."""

    topic: str
    partition: int
    offset: int
    key: str | None
    headers: dict[str, str]
    envelope: Envelope | None
    raw: str

    def as_json(self) -> dict[str, Any]:
        """For `--json` output."""
        return {
            "topic": self.topic,
            "partition": self.partition,
            "offset": self.offset,
            "key": self.key,
            "headers": self.headers,
            "envelope": self.envelope.model_dump(mode="json") if self.envelope else None,
            "raw": None if self.envelope else self.raw,
        }


def to_message(record: Any) -> TailedMessage:
    """An aiokafka ConsumerRecord as a TailedMessage."""
    try:
        envelope: Envelope | None = Envelope.from_bytes(record.value)
    except EnvelopeError:
        envelope = None
    raw = (record.value or b"").decode("utf-8", errors="replace")
    return TailedMessage(
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        key=record.key.decode("utf-8", errors="replace") if record.key else None,
        headers={k: v.decode("utf-8", errors="replace") for k, v in record.headers or ()},
        envelope=envelope,
        raw=raw,
    )


async def tail(
    broker: str,
    topic: str,
    *,
    from_beginning: bool,
    idle_seconds: float | None,
    request_timeout_ms: int,
    ready: asyncio.Event | None = None,
) -> AsyncIterator[TailedMessage]:
    """Every new message of every partition of `topic` (or all from the start); stops after
    `idle_seconds` without a message when given. `ready` is set once positioned."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=broker,
        enable_auto_commit=False,
        request_timeout_ms=request_timeout_ms,
    )
    await consumer.start()
    try:
        if topic not in await consumer.topics():
            raise TopicNotFound(f"The broker at {broker} has no topic {topic!r}.")
        partitions = [
            TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())
        ]
        consumer.assign(partitions)
        if from_beginning:
            await consumer.seek_to_beginning(*partitions)
        else:
            await consumer.seek_to_end(*partitions)
        for tp in partitions:
            await consumer.position(tp)
        if ready is not None:
            ready.set()
        loop = asyncio.get_running_loop()
        last = loop.time()
        while True:
            batches = await consumer.getmany(timeout_ms=200)
            records = sorted(
                (r for batch in batches.values() for r in batch), key=lambda r: r.timestamp
            )
            for record in records:
                yield to_message(record)
            if records:
                last = loop.time()
            elif idle_seconds is not None and loop.time() - last > idle_seconds:
                return
    finally:
        await consumer.stop()


def pretty_data(envelope: Envelope) -> str:
    """The payload as indented JSON."""
    return orjson.dumps(envelope.data, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS).decode()
