"""Replaying a dead-letter topic: each dead letter goes back to its original topic, once.

A replay reads the `.dlq` from a committed cursor (consumer group
`kafka_admin_service-replay-<topic>`, partitions assigned explicitly, no group join), publishes
each record's bytes to the topic named by its `dlq_original_topic` header with the original key
and headers (the old `dlq_*` headers dropped, `dlq_replayed_from` added), and commits after each
one, so a second replay sends only what arrived since. Replays of one topic run one at a time.

A dead letter names the consumer group that failed it (`dlq_consumer_group`); its replay carries
that group in `dlq_replay_group`, and the consumers of every other group skip it (shared.bus), so
groups that handled the message already do not handle it again. A letter without a group (an
old one, or one of a gateway's groupless readers) goes back to every reader.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from kafka_admin_service.monitor import original_topic_of, partitions
from kafka_admin_service.settings import KafkaAdminSettings
from shared.logging import get_logger
from shared.publisher import EventPublisher
from shared.redelivery import REPLAY_GROUP_HEADER

log = get_logger(__name__)

ORIGINAL_TOPIC_HEADER = "dlq_original_topic"
CONSUMER_GROUP_HEADER = "dlq_consumer_group"
REPLAYED_FROM_HEADER = "dlq_replayed_from"
_DLQ_HEADER_PREFIX = "dlq_"


def replay_group(topic: str) -> str:
    """The consumer group that holds a dead-letter topic's replay cursor."""
    return f"kafka_admin_service-replay-{topic}"


def replay_target(record: ConsumerRecord[Any, Any], dead_letter: str) -> str:
    """Where a dead letter goes back to: its header, else the topic the `.dlq` belongs to."""
    for name, value in record.headers or ():
        if name == ORIGINAL_TOPIC_HEADER and value:
            return bytes(value).decode()
    return original_topic_of(dead_letter)


def replay_headers(record: ConsumerRecord[Any, Any], dead_letter: str) -> list[tuple[str, bytes]]:
    """The original headers (correlation id, event type), a note of the replay and the one
    consumer group it is for."""
    kept = [
        (name, bytes(value))
        for name, value in record.headers or ()
        if not name.startswith(_DLQ_HEADER_PREFIX)
    ]
    headers = [*kept, (REPLAYED_FROM_HEADER, f"{dead_letter}:{record.offset}".encode())]
    group = _header(record, CONSUMER_GROUP_HEADER)
    if group:
        headers.append((REPLAY_GROUP_HEADER, group))
    return headers


def _header(record: ConsumerRecord[Any, Any], wanted: str) -> bytes | None:
    for name, value in record.headers or ():
        if name == wanted:
            return bytes(value)
    return None


class DlqReplayer:
    """Sends dead letters back; the publisher connects on first use."""

    def __init__(self, settings: KafkaAdminSettings) -> None:
        self._settings = settings
        self._publisher = EventPublisher(settings)
        self._started = False
        self._start_lock = asyncio.Lock()
        self._topic_locks: dict[str, asyncio.Lock] = {}

    async def _publisher_ready(self) -> EventPublisher:
        async with self._start_lock:
            if not self._started:
                await self._publisher.start()
                self._started = True
        return self._publisher

    async def close(self) -> None:
        """Flush and disconnect the publisher."""
        if self._started:
            await self._publisher.stop()
            self._started = False

    async def replay(self, dead_letter: str) -> int:
        """Send every dead letter past the cursor back to its topic; how many were sent."""
        lock = self._topic_locks.setdefault(dead_letter, asyncio.Lock())
        async with lock:
            publisher = await self._publisher_ready()
            reader = AIOKafkaConsumer(
                bootstrap_servers=self._settings.kafka_broker,
                group_id=replay_group(dead_letter),
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                request_timeout_ms=self._settings.kafka_request_timeout_ms,
                client_id=f"{self._settings.service_name}-replay",
            )
            await reader.start()
            try:
                tps = partitions(dead_letter)
                reader.assign(tps)
                # Only what is there now: letters dead-lettered during the replay wait for the next.
                ends = await reader.end_offsets(tps)
                replayed = 0
                for tp in tps:
                    replayed += await self._replay_partition(
                        reader, publisher, tp, ends[tp], dead_letter
                    )
            finally:
                with contextlib.suppress(Exception):
                    await reader.stop()
        log.info("dead letters replayed", topic=dead_letter, replayed=replayed)
        return replayed

    async def _replay_partition(
        self,
        reader: AIOKafkaConsumer,
        publisher: EventPublisher,
        tp: TopicPartition,
        end: int,
        dead_letter: str,
    ) -> int:
        replayed = 0
        while await reader.position(tp) < end:
            batch = await reader.getmany(tp, timeout_ms=self._settings.replay_fetch_timeout_ms)
            for record in batch.get(tp, []):
                if record.offset >= end:
                    return replayed
                await publisher.publish_raw(
                    replay_target(record, dead_letter),
                    record.key,
                    record.value,
                    replay_headers(record, dead_letter),
                )
                # The cursor moves only past what was published: a failed replay resumes here.
                await reader.commit({tp: record.offset + 1})
                replayed += 1
        return replayed
