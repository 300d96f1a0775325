"""Graceful shutdown of a real service process (`python -m notification_service`): SIGTERM while
events flow -> it stops fetching, finishes the message in hand, commits, flushes the outbox and
the producer, and exits 0 before the 10 s deadline; after a restart nothing is lost.

The service stores in the in-process store (memory://), so the effect counted across the
restart is on Kafka: every handled event announces its notification on `notification.created`
(through the outbox) with the event's id as the notification id.

The rest of the fleet is checked idle: each service exits 0 on SIGTERM before the deadline.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from devstack.config import environment_without_parts
from devstack.parts import LOOPBACK, free_port
from notification_service.events import CONSUMER_GROUP
from shared.events import Envelope, NotificationCreated, NotificationRequested
from shared.publisher import EventPublisher
from tests.fixtures.bus import bus_settings
from tests.fixtures.fleet import REPO_ROOT
from tests.fixtures.parts import (  # noqa: F401 - fixtures
    TEST_JWT_SECRET,
    broker_with_topics,
    broker_without_topics,
    eventually,
    read_all,
)

pytestmark = pytest.mark.integration

SHUTDOWN_DEADLINE_SECONDS = 10.0
READY_SECONDS = 60.0
# Events keep coming at about this pace until after the first run has exited.
PUBLISH_PAUSE_SECONDS = 0.01
EVENTS_AFTER_EXIT = 20
# SIGTERM once the first run has handled this many events (events keep flowing meanwhile).
HANDLED_BEFORE_SIGTERM = 40


class ServiceProcess:
    """`python -m <service>` with its output in a file."""

    def __init__(
        self,
        broker: str,
        log_path: Path,
        service: str = "notification_service",
        extra_env: dict[str, str] | None = None,
        port: int | None = None,
    ) -> None:
        self.service = service
        self.port = port or free_port()
        self.log_path = log_path
        env = environment_without_parts()
        env |= extra_env or {}
        env |= {
            "KAFKA_BROKER": broker,
            "JWT_SECRET": TEST_JWT_SECRET,
            "PORT": str(self.port),
            "HOST": LOOPBACK,
            "MONGO_URI": "memory://",
            "PYTHONPATH": str(REPO_ROOT),
        }
        with log_path.open("ab") as log:
            self.process = subprocess.Popen(  # noqa: S603 - this interpreter, a service module
                [sys.executable, "-m", service],
                cwd=REPO_ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    async def ready(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"{self.service} exited early:\n{self.log_tail()}")
        try:
            async with httpx.AsyncClient() as client:
                response = await client.get(f"http://{LOOPBACK}:{self.port}/ready", timeout=2)
        except httpx.HTTPError:
            return False
        return response.status_code == 200

    def log_tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


async def announced(broker: str) -> Counter[str]:
    """How often each notification was announced on notification.created."""
    records = await read_all(broker, NotificationCreated.topic)
    return Counter(Envelope.from_bytes(r.value).data["notification_id"] for r in records)


async def committed_total(broker: str) -> int:
    admin = AIOKafkaAdminClient(bootstrap_servers=broker)
    await admin.start()
    try:
        tps = [TopicPartition(NotificationRequested.topic, p) for p in range(3)]
        offsets = await admin.list_consumer_group_offsets(CONSUMER_GROUP, partitions=tps)
    finally:
        await admin.close()
    return sum(max(o.offset, 0) for o in offsets.values())


@pytest.fixture
async def publisher(own_broker: str) -> AsyncIterator[EventPublisher]:
    client = EventPublisher(bus_settings(own_broker, service_name="test"))
    await client.start()
    try:
        yield client
    finally:
        await client.stop()


async def test_sigterm_while_events_flow_exits_in_time_and_loses_nothing(
    own_broker: str, publisher: EventPublisher, tmp_path: Path
) -> None:
    sent: list[str] = []
    stop_flow = asyncio.Event()

    async def flow() -> None:
        index = 0
        while not stop_flow.is_set():
            event = NotificationRequested(
                user_id=f"user-{index % 7}", type="other", content=f"Message {index}."
            )
            sent.append(str((await publisher.publish(event)).id))
            index += 1
            await asyncio.sleep(PUBLISH_PAUSE_SECONDS)

    first = ServiceProcess(own_broker, tmp_path / "first.log")
    second: ServiceProcess | None = None
    await eventually(first.ready, timeout=READY_SECONDS, what="the first run to be ready")
    flowing = asyncio.create_task(flow())
    try:

        async def handled_some() -> bool:
            return sum((await announced(own_broker)).values()) >= HANDLED_BEFORE_SIGTERM

        await eventually(handled_some, timeout=30, what="the first run to handle events")
        first.process.send_signal(signal.SIGTERM)
        # Waited for, not timed: not exiting within the deadline fails here.
        await eventually(
            lambda: first.process.poll() is not None,
            timeout=SHUTDOWN_DEADLINE_SECONDS,
            interval=0.05,
            what="the first run to exit before the 10 s deadline",
        )
        assert first.process.returncode == 0, first.log_tail()
        committed = await committed_total(own_broker)
        before_restart = await announced(own_broker)
        # Committed means stored and announced: the outbox was flushed before exiting.
        assert committed > 0
        assert len(before_restart) >= committed
        at_exit = len(sent)
        await eventually(lambda: len(sent) >= at_exit + EVENTS_AFTER_EXIT, what="later events")
        stop_flow.set()
        await flowing

        second = ServiceProcess(own_broker, tmp_path / "second.log")
        await eventually(second.ready, timeout=READY_SECONDS, what="the second run to be ready")

        async def all_announced() -> bool:
            return set(sent) <= set(await announced(own_broker))

        await eventually(all_announced, timeout=60, what="every event to be handled")
        counts = await announced(own_broker)
        duplicated = sum(c - 1 for c in counts.values() if c > 1)
        print(
            f"\n[sigterm] sent={len(sent)} stored={len(set(sent) & set(counts))} "
            f"duplicated={duplicated} committed-at-sigterm={committed}"
        )
        assert len(sent) > committed
    finally:
        flowing.cancel()
        await asyncio.gather(flowing, return_exceptions=True)
        first.kill()
        if second is not None:
            if second.process.poll() is None:
                second.process.send_signal(signal.SIGTERM)
                try:
                    second.process.wait(timeout=SHUTDOWN_DEADLINE_SECONDS)
                except subprocess.TimeoutExpired:
                    second.kill()
            second.kill()


SERVICES = (
    "kafka_admin_service",
    "user_service",
    "order_service",
    "recommendation_service",
    "scheduler_service",
    "graphql_gateway",
)


async def test_every_service_exits_cleanly_on_sigterm(
    own_broker: str, redis_url: str, tmp_path: Path
) -> None:
    """The rest of the fleet, idle: SIGTERM -> exit 0 before the 10 s deadline, each."""
    ports = {service: free_port() for service in SERVICES}
    urls = {f"{s.upper()}_URL": f"http://{LOOPBACK}:{port}" for s, port in ports.items()}
    env = {"REDIS_URL": redis_url, **urls}
    processes = [
        ServiceProcess(own_broker, tmp_path / f"{service}.log", service, env, ports[service])
        for service in SERVICES
    ]
    try:
        for process in processes:
            await eventually(process.ready, timeout=READY_SECONDS, what=f"{process.service} ready")
        for process in processes:
            process.process.send_signal(signal.SIGTERM)

        def all_exited() -> bool:
            return all(p.process.poll() is not None for p in processes)

        await eventually(
            all_exited,
            timeout=SHUTDOWN_DEADLINE_SECONDS,
            interval=0.05,
            what="every service to exit before the 10 s deadline",
        )
        codes = {p.service: p.process.returncode for p in processes}
        print(f"\n[sigterm fleet] exit codes {codes}")
        assert codes == dict.fromkeys(SERVICES, 0), "\n".join(
            p.log_tail() for p in processes if p.process.returncode != 0
        )
    finally:
        for process in processes:
            process.kill()
