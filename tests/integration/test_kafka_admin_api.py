"""The kafka admin service's monitoring API and gauges against the real broker: topics, lag of a
registry group (made known by producing one by one and committing in that group), dead-letter
depth, replay (each dead letter back once), and the admin-only guard."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import pytest_asyncio
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from kafka_admin_service.main import create_app
from kafka_admin_service.replay import REPLAYED_FROM_HEADER
from kafka_admin_service.settings import KafkaAdminSettings
from shared.events.topics import all_topic_names, consumer_groups, partitions_of
from tests.fixtures.apps import running_service, service_settings
from tests.fixtures.parts import eventually, read_all, signed_token

pytestmark = pytest.mark.integration

# A registry group and topic few other tests touch; the test leaves the group with no lag.
LAG_GROUP = "recommendation_service"
LAG_TOPIC = "purchase-history.provided"
LAG_PARTITION = 0
DLQ_TOPIC = "user.preferences-updated.dlq"
ENDPOINTS = [
    ("GET", "/api/topics"),
    ("GET", "/api/consumer-groups"),
    ("GET", "/api/dlq"),
    ("POST", f"/api/dlq/{DLQ_TOPIC}/replay"),
]


def token(*roles: str) -> dict[str, str]:
    user_id = uuid.uuid4().hex
    signed = signed_token(user_id, f"{user_id}@example.com", list(roles))
    return {"Authorization": f"Bearer {signed}"}


@dataclass
class Admin:
    client: httpx.AsyncClient
    broker: str
    headers: dict[str, str]


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def admin(kafka_broker: str) -> AsyncIterator[Admin]:
    settings = service_settings(
        KafkaAdminSettings, kafka_broker, admin_metrics_interval_seconds=0.2
    )
    async with running_service(create_app, settings) as running:
        app, client = running.app, running.client
        await eventually(app.state.provisioner.created.is_set, what="topics provisioned")
        yield Admin(client, kafka_broker, token("customer", "admin"))


@pytest.fixture
async def producer(kafka_broker: str) -> AsyncIterator[AIOKafkaProducer]:
    client = AIOKafkaProducer(bootstrap_servers=kafka_broker, acks="all")
    await client.start()
    try:
        yield client
    finally:
        await client.stop()


async def commit_as(broker: str, group: str, tp: TopicPartition, offset: int) -> None:
    """Commit an offset in a group without joining it (explicit assignment)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=broker, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign([tp])
        await consumer.commit({tp: offset})
    finally:
        await consumer.stop()


async def test_every_endpoint_wants_an_admin_token(admin: Admin) -> None:
    customer = token("customer")
    forged = {"Authorization": admin.headers["Authorization"][:-2] + "xx"}
    for method, path in ENDPOINTS:
        for headers in ({}, forged):
            response = await admin.client.request(method, path, headers=headers)
            assert response.status_code == 401, (method, path)
            assert response.json()["error"]["code"] == "UNAUTHENTICATED"
        response = await admin.client.request(method, path, headers=customer)
        assert response.status_code == 403, (method, path)
        assert response.json()["error"]["code"] == "FORBIDDEN"


async def test_topics_list_the_registry_with_end_offsets(
    admin: Admin, producer: AIOKafkaProducer
) -> None:
    before = await admin.client.get("/api/topics", headers=admin.headers)
    assert before.status_code == 200, before.text
    by_name = {t["name"]: t for t in before.json()}
    assert set(by_name) == set(all_topic_names())
    for name, found in by_name.items():
        assert found["partitions"] == partitions_of(name)
        assert set(found["end_offsets"]) == {str(p) for p in range(partitions_of(name))}

    await producer.send_and_wait(LAG_TOPIC, b"x", partition=1)
    after = await admin.client.get("/api/topics", headers=admin.headers)
    ends_before = by_name[LAG_TOPIC]["end_offsets"]
    ends_after = {t["name"]: t for t in after.json()}[LAG_TOPIC]["end_offsets"]
    assert ends_after["1"] == ends_before["1"] + 1
    assert ends_after["0"] == ends_before["0"]


async def lag_row(admin: Admin) -> dict[str, Any]:
    response = await admin.client.get("/api/consumer-groups", headers=admin.headers)
    assert response.status_code == 200, response.text
    rows = response.json()
    expected = {
        (group, name, p)
        for group, names in consumer_groups().items()
        for name in names
        for p in range(partitions_of(name))
    }
    assert {(r["group"], r["topic"], r["partition"]) for r in rows} == expected
    assert all(r["lag"] >= 0 for r in rows)
    [row] = [
        r
        for r in rows
        if (r["group"], r["topic"], r["partition"]) == (LAG_GROUP, LAG_TOPIC, LAG_PARTITION)
    ]
    return row


def gauge(text: str, name: str, **labels: str) -> float | None:
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        match = re.fullmatch(rf"{name}\{{(.*)\}} (\S+)", line)
        if match and ",".join(sorted(match[1].split(","))) == wanted:
            return float(match[2])
    return None


async def test_consumer_lag_of_a_registry_group(admin: Admin, producer: AIOKafkaProducer) -> None:
    tp = TopicPartition(LAG_TOPIC, LAG_PARTITION)
    start = int((await lag_row(admin))["end_offset"])
    sent, consumed = 7, 3
    for index in range(sent):  # one by one: the embedded broker's watermark needs it
        await producer.send_and_wait(LAG_TOPIC, f"lag-{index}".encode(), partition=LAG_PARTITION)
    await commit_as(admin.broker, LAG_GROUP, tp, start + consumed)
    try:
        row = await lag_row(admin)
        assert row == {
            "group": LAG_GROUP,
            "topic": LAG_TOPIC,
            "partition": LAG_PARTITION,
            "committed": start + consumed,
            "end_offset": start + sent,
            "lag": sent - consumed,
        }
        labels = {"group": LAG_GROUP, "topic": LAG_TOPIC, "partition": str(LAG_PARTITION)}

        async def gauge_shows_lag() -> bool:
            text = (await admin.client.get("/metrics")).text
            return gauge(text, "kafka_consumer_lag", **labels) == sent - consumed

        await eventually(gauge_shows_lag, timeout=10, what="the lag gauge")
    finally:
        # Leave the group caught up: a later test's recommendation service must not read these.
        await commit_as(admin.broker, LAG_GROUP, tp, start + sent)
    assert (await lag_row(admin))["lag"] == 0


async def dlq_depth(admin: Admin) -> int:
    response = await admin.client.get("/api/dlq", headers=admin.headers)
    assert response.status_code == 200, response.text
    rows = {r["topic"]: r for r in response.json()}
    assert set(rows) == {n for n in all_topic_names() if n.endswith(".dlq")}
    assert rows[DLQ_TOPIC]["original_topic"] == DLQ_TOPIC.removesuffix(".dlq")
    return int(rows[DLQ_TOPIC]["depth"])


async def test_dead_letters_are_counted_and_replayed_once(
    admin: Admin, producer: AIOKafkaProducer
) -> None:
    # Send them back to a topic of this test's own, to count exactly what arrives there.
    target = f"test.replay-{uuid.uuid4().hex[:8]}"
    depth_before = await dlq_depth(admin)
    letters = [f"letter-{uuid.uuid4().hex}".encode() for _ in range(3)]
    for letter in letters:
        await producer.send_and_wait(
            DLQ_TOPIC,
            letter,
            key=b"user-1",
            headers=[
                ("correlation_id", b"corr-1"),
                ("dlq_original_topic", target.encode()),
                ("dlq_error", b"RuntimeError: boom"),
            ],
        )
    assert await dlq_depth(admin) == depth_before + len(letters)

    async def depth_gauge() -> bool:
        text = (await admin.client.get("/metrics")).text
        return gauge(text, "kafka_dlq_depth", topic=DLQ_TOPIC) == depth_before + len(letters)

    await eventually(depth_gauge, timeout=10, what="the dead-letter depth gauge")

    first = await admin.client.post(f"/api/dlq/{DLQ_TOPIC}/replay", headers=admin.headers)
    assert first.status_code == 200, first.text
    assert first.json()["topic"] == DLQ_TOPIC
    assert first.json()["replayed"] >= len(letters)
    again = await admin.client.post(f"/api/dlq/{DLQ_TOPIC}/replay", headers=admin.headers)
    assert again.json() == {"topic": DLQ_TOPIC, "replayed": 0}

    arrived = await read_all(admin.broker, target)
    print(f"\n[dlq replay] dead-lettered={len(letters)} replayed-here={len(arrived)}")
    assert sorted(r.value for r in arrived) == sorted(letters)
    for record in arrived:
        headers = dict(record.headers)
        assert record.key == b"user-1"
        assert headers["correlation_id"] == b"corr-1"
        assert not any(name.startswith("dlq_error") for name in headers)
        assert headers[REPLAYED_FROM_HEADER].startswith(f"{DLQ_TOPIC}:".encode())


async def test_replaying_an_unknown_topic_is_not_found(admin: Admin) -> None:
    for topic in ("nope.dlq", "user.registered"):
        response = await admin.client.post(f"/api/dlq/{topic}/replay", headers=admin.headers)
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "NOT_FOUND"
