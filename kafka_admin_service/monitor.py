"""What the monitoring API and the Prometheus gauges report: topics and their end offsets,
consumer lag per registry group and partition, dead-letter depths.

Everything is asked for explicitly from the registry (groups and partitions): listing groups or
asking for a group's offsets without partitions misbehaves on the embedded broker (BROKER.md),
and describing a topic there would create it.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from kafka_admin_service.settings import KafkaAdminSettings
from shared.events.topics import (
    DLQ_SUFFIX,
    all_topic_names,
    consumer_groups,
    partitions_of,
)
from shared.logging import get_logger
from shared.metrics import CONSUMER_LAG, DLQ_DEPTH

log = get_logger(__name__)

NO_COMMIT = -1


def partitions(topic: str) -> list[TopicPartition]:
    """Every partition of a registry topic (or dead-letter topic)."""
    return [TopicPartition(topic, p) for p in range(partitions_of(topic))]


def dead_letter_topics() -> list[str]:
    """The registry's dead-letter topics."""
    return [name for name in all_topic_names() if name.endswith(DLQ_SUFFIX)]


def original_topic_of(dead_letter: str) -> str:
    """`<topic>.dlq` -> `<topic>`."""
    return dead_letter.removesuffix(DLQ_SUFFIX)


@dataclass(frozen=True, slots=True)
class GroupLag:
    """One registry group on one partition."""

    group: str
    topic: str
    partition: int
    committed: int | None
    end_offset: int
    lag: int

    def as_json(self) -> dict[str, Any]:
        """The API's shape."""
        return {
            "group": self.group,
            "topic": self.topic,
            "partition": self.partition,
            "committed": self.committed,
            "end_offset": self.end_offset,
            "lag": self.lag,
        }


def lag_of(committed: int | None, beginning: int, end: int) -> int:
    """End minus committed, never negative; with no commit the group starts at the beginning
    (consumers read from the earliest offset)."""
    start = committed if committed is not None else beginning
    return max(0, end - start)


class BrokerMonitor:
    """Long-lived clients (a group-less consumer for offsets, an admin client for commits),
    connected on first use so the service starts before the broker does."""

    def __init__(self, settings: KafkaAdminSettings) -> None:
        self._settings = settings
        self._lock = asyncio.Lock()
        self._consumer: AIOKafkaConsumer | None = None
        self._admin: AIOKafkaAdminClient | None = None

    async def _clients(self) -> tuple[AIOKafkaConsumer, AIOKafkaAdminClient]:
        async with self._lock:
            if self._consumer is None or self._admin is None:
                consumer = AIOKafkaConsumer(
                    bootstrap_servers=self._settings.kafka_broker,
                    enable_auto_commit=False,
                    request_timeout_ms=self._settings.kafka_request_timeout_ms,
                    client_id=f"{self._settings.service_name}-monitor",
                )
                admin = AIOKafkaAdminClient(
                    bootstrap_servers=self._settings.kafka_broker,
                    request_timeout_ms=self._settings.kafka_request_timeout_ms,
                    client_id=f"{self._settings.service_name}-monitor",
                )
                try:
                    await consumer.start()
                    await admin.start()
                except BaseException:
                    await self._close(consumer, admin)
                    raise
                self._consumer, self._admin = consumer, admin
            return self._consumer, self._admin

    async def reset(self) -> None:
        """Drop the clients (after an error); the next call reconnects."""
        async with self._lock:
            await self._close(self._consumer, self._admin)
            self._consumer = self._admin = None

    async def close(self) -> None:
        """Disconnect."""
        await self.reset()

    @staticmethod
    async def _close(consumer: AIOKafkaConsumer | None, admin: AIOKafkaAdminClient | None) -> None:
        if consumer is not None:
            with contextlib.suppress(Exception):
                await consumer.stop()
        if admin is not None:
            with contextlib.suppress(Exception):
                await admin.close()

    async def end_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        """The next offset to be written on each partition."""
        consumer, _ = await self._clients()
        return dict(await consumer.end_offsets(tps))

    async def beginning_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        """The oldest offset still held on each partition."""
        consumer, _ = await self._clients()
        return dict(await consumer.beginning_offsets(tps))

    async def committed(self, group: str, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        """A group's committed offsets on the listed partitions (-1: none yet)."""
        _, admin = await self._clients()
        found = await admin.list_consumer_group_offsets(group, partitions=tps)
        return {tp: found[tp].offset if tp in found else NO_COMMIT for tp in tps}

    async def topics(self) -> list[dict[str, Any]]:
        """Every registry topic with its partition count and end offsets."""
        names = all_topic_names()
        ends = await self.end_offsets([tp for name in names for tp in partitions(name)])
        return [
            {
                "name": name,
                "partitions": partitions_of(name),
                "end_offsets": {str(tp.partition): ends[tp] for tp in partitions(name)},
            }
            for name in names
        ]

    async def consumer_lag(self) -> list[GroupLag]:
        """Lag of every registry group on every partition of the topics it reads."""
        groups = consumer_groups()
        all_tps = sorted(
            {tp for topics in groups.values() for name in topics for tp in partitions(name)}
        )
        ends = await self.end_offsets(all_tps)
        beginnings = await self.beginning_offsets(all_tps)
        rows: list[GroupLag] = []
        for group, topics in sorted(groups.items()):
            tps = [tp for name in topics for tp in partitions(name)]
            committed = await self.committed(group, tps)
            for tp in tps:
                offset = committed[tp]
                known = offset if offset >= 0 else None
                rows.append(
                    GroupLag(
                        group=group,
                        topic=tp.topic,
                        partition=tp.partition,
                        committed=known,
                        end_offset=ends[tp],
                        lag=lag_of(known, beginnings[tp], ends[tp]),
                    )
                )
        return rows

    async def dlq_depths(self) -> list[dict[str, Any]]:
        """Each dead-letter topic, its original topic and how many messages it holds."""
        names = dead_letter_topics()
        tps = [tp for name in names for tp in partitions(name)]
        ends = await self.end_offsets(tps)
        beginnings = await self.beginning_offsets(tps)
        return [
            {
                "topic": name,
                "original_topic": original_topic_of(name),
                "depth": sum(max(0, ends[tp] - beginnings[tp]) for tp in partitions(name)),
            }
            for name in names
        ]

    async def refresh_gauges(self) -> None:
        """Set the Prometheus gauges from the broker's current answers."""
        for row in await self.consumer_lag():
            CONSUMER_LAG.labels(row.group, row.topic, str(row.partition)).set(row.lag)
        for dlq in await self.dlq_depths():
            DLQ_DEPTH.labels(dlq["topic"]).set(dlq["depth"])


class GaugeRefresher:
    """Refreshes the lag and depth gauges every ADMIN_METRICS_INTERVAL_SECONDS."""

    def __init__(
        self, monitor: BrokerMonitor, interval_seconds: float, topics_created: asyncio.Event
    ) -> None:
        self._monitor = monitor
        self._interval = interval_seconds
        self._topics_created = topics_created
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Refresh in the background."""
        self._task = asyncio.create_task(self._run(), name="gauge-refresh")

    async def stop(self) -> None:
        """Stop refreshing."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        # Asking for offsets of a topic the broker lacks could auto-create it: wait for them all.
        await self._topics_created.wait()
        while True:
            try:
                await self._monitor.refresh_gauges()
            except Exception as exc:
                log.warning("metrics refresh failed", error=f"{type(exc).__name__}: {exc}")
                await self._monitor.reset()
            await asyncio.sleep(self._interval)
