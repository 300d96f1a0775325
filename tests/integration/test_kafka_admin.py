"""The kafka admin service against a fresh broker of its own (not the session broker, whose
topics already exist): it waits for the broker, creates every registry topic with its
partitions, and only then reports ready."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest
from aiokafka import AIOKafkaConsumer

from devstack.parts import EmbeddedPart, free_port, start_broker
from kafka_admin_service.main import create_app
from kafka_admin_service.settings import KafkaAdminSettings
from shared.events.topics import all_topic_names, partitions_of
from shared.kafka_topics import ensure_topics, missing_topics
from tests.fixtures.apps import running_service, service_settings
from tests.fixtures.parts import broker_without_topics, eventually  # noqa: F401 - fixtures

pytestmark = pytest.mark.integration


def admin_settings(broker: str) -> KafkaAdminSettings:
    return service_settings(
        KafkaAdminSettings,
        broker,
        topic_creation_attempt_seconds=5,
        topic_creation_pause_seconds=0.1,
        topic_check_timeout_ms=1000,
    )


async def topic_partitions(broker: str) -> dict[str, int]:
    """Every topic the broker has and its partition count (from a full metadata fetch, which
    does not auto-create anything)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=broker)
    await consumer.start()
    try:
        names = await consumer.topics()
        return {name: len(consumer.partitions_for_topic(name) or ()) for name in names}
    finally:
        await consumer.stop()


def assert_every_registry_topic_has_its_partitions(found: dict[str, int]) -> None:
    for name in all_topic_names():
        assert found.get(name) == partitions_of(name), name


@pytest.fixture
async def admin_without_broker() -> AsyncIterator[tuple[httpx.AsyncClient, int]]:
    """The admin app started while nothing listens on its broker's port yet."""
    port = free_port()
    async with running_service(create_app, admin_settings(f"127.0.0.1:{port}")) as running:
        yield running.client, port


async def test_ready_only_once_the_broker_is_up_and_every_topic_exists(
    admin_without_broker: tuple[httpx.AsyncClient, int],
) -> None:
    client, port = admin_without_broker
    assert (await client.get("/health")).status_code == 200
    not_ready = await client.get("/ready")
    assert not_ready.status_code == 503
    assert not_ready.json()["checks"] == {"topics": False}

    broker = await asyncio.to_thread(start_broker, port)
    try:

        async def is_ready() -> bool:
            return (await client.get("/ready")).status_code == 200

        await eventually(is_ready, timeout=30, what="the admin service to become ready")
        assert await missing_topics(broker.url) == []
        assert_every_registry_topic_has_its_partitions(await topic_partitions(broker.url))
    finally:
        await asyncio.to_thread(broker.stop)


async def test_creating_the_topics_twice_is_harmless(fresh_broker: EmbeddedPart) -> None:
    assert set(await missing_topics(fresh_broker.url)) == set(all_topic_names())
    first = await ensure_topics(fresh_broker.url, timeout_seconds=10)
    second = await ensure_topics(fresh_broker.url, timeout_seconds=10)
    assert first == second == all_topic_names()
    found = await topic_partitions(fresh_broker.url)
    assert_every_registry_topic_has_its_partitions(found)
    # Exactly the registry: nothing else was created along the way.
    assert set(found) == set(all_topic_names())


async def test_the_app_on_a_broker_whose_topics_exist_is_ready(
    fresh_broker: EmbeddedPart,
) -> None:
    await ensure_topics(fresh_broker.url, timeout_seconds=10)
    async with running_service(create_app, admin_settings(fresh_broker.url)) as running:
        client = running.client

        async def is_ready() -> bool:
            return (await client.get("/ready")).status_code == 200

        await eventually(is_ready, timeout=15, what="the admin service to become ready")
        assert (await client.get("/metrics")).status_code == 200
    assert_every_registry_topic_has_its_partitions(await topic_partitions(fresh_broker.url))
