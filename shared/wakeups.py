"""Wake-ups for dozing consumers, so an idle fleet stops polling the broker.

A consumer that has had nothing for `KAFKA_IDLE_AFTER_SECONDS` dozes: it pauses its
partitions, so its client sends no fetch, and looks again only every `KAFKA_IDLE_POLL_SECONDS`
or at once when woken. The fleet's publishers wake it: after a record is acknowledged they
PUBLISH `<topic>:<partition>` on one Redis channel, at most once per partition per
`KAFKA_WAKE_THROTTLE_SECONDS`. The throttle is shorter than the idle time, so a partition whose
last wake-up was throttled had a record delivered too recently for its reader to be dozing.

Why: the embedded broker (Tansu) holds every fetch for the whole `KAFKA_FETCH_MAX_WAIT_MS`
even when a record arrives meanwhile, so a 50 ms delivery needs 20 fetches a second per
consumer while nothing happens (Apache Kafka answers a long poll as soon as a record arrives,
so there the default 500 ms wait costs neither latency nor much CPU). Redis is a hint, never a
source of truth: without Redis, or when a wake-up is lost, a dozing consumer still finds the
record within `KAFKA_IDLE_POLL_SECONDS`; nothing is lost, only later.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

import redis.asyncio as redis
from redis.exceptions import RedisError

from shared.cache import redis_client
from shared.logging import get_logger
from shared.settings import ServiceSettings

log = get_logger(__name__)

CHANNEL = "fleet:records-written"
_RECONNECT_SECONDS = 5.0

Woken = Callable[[str, int], None]


class Wakeups:
    """One process's side of the channel: announces the partitions its publisher wrote, and
    tells its dozing consumers about the partitions others wrote."""

    def __init__(self, client: redis.Redis | None, throttle_seconds: float) -> None:
        self._client = client
        self._throttle_seconds = throttle_seconds
        self._last_sent: dict[tuple[str, int], float] = {}
        self._sending: set[asyncio.Task[None]] = set()
        self._listeners: list[Woken] = []
        self._listening: asyncio.Task[None] | None = None

    @classmethod
    def from_settings(cls, settings: ServiceSettings) -> Wakeups:
        """On REDIS_URL when consumers may doze; else a channel that carries nothing."""
        if not settings.redis_url or settings.kafka_idle_after_seconds <= 0:
            return cls(None, settings.kafka_wake_throttle_seconds)
        client = redis_client(settings.redis_url, timeout_seconds=settings.redis_timeout_seconds)
        return cls(client, settings.kafka_wake_throttle_seconds)

    @property
    def enabled(self) -> bool:
        """Whether wake-ups travel (else dozing consumers rely on their idle poll)."""
        return self._client is not None

    def written(self, topic: str, partition: int) -> None:
        """A record of this partition was acknowledged: wake its readers (not awaited)."""
        if self._client is None:
            return
        now = time.monotonic()
        last = self._last_sent.get((topic, partition))
        if last is not None and now - last < self._throttle_seconds:
            return
        self._last_sent[(topic, partition)] = now
        task = asyncio.create_task(self._send(f"{topic}:{partition}"))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _send(self, message: str) -> None:
        assert self._client is not None
        try:
            await self._client.publish(CHANNEL, message)
        except (RedisError, OSError) as exc:
            log.debug("wake-up not sent", error=str(exc))

    def listen(self, woken: Woken) -> None:
        """Call `woken(topic, partition)` for every wake-up heard (starts listening)."""
        self._listeners.append(woken)
        if self._client is not None and self._listening is None:
            self._listening = asyncio.create_task(self._listen(), name="wakeups")

    async def _listen(self) -> None:
        assert self._client is not None
        while True:
            try:
                async with self._client.pubsub(ignore_subscribe_messages=True) as pubsub:
                    await pubsub.subscribe(CHANNEL)
                    async for message in pubsub.listen():
                        self._deliver(message["data"])
            except (RedisError, OSError) as exc:
                log.debug("wake-ups unheard; listening again", error=str(exc))
                await asyncio.sleep(_RECONNECT_SECONDS)

    def _deliver(self, data: bytes | str) -> None:
        text = data.decode() if isinstance(data, bytes) else data
        topic, _, partition = text.rpartition(":")
        if not topic or not partition.isdigit():
            return
        for woken in self._listeners:
            woken(topic, int(partition))

    async def aclose(self) -> None:
        """Stop listening and close the connection."""
        if self._listening is not None:
            self._listening.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listening
        for task in list(self._sending):
            task.cancel()
        if self._client is not None:
            await self._client.aclose()
