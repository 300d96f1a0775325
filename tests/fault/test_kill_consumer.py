"""Fault (a): kill -9 the notification service in the middle of 1,000 events, restart it.

1,000 `notification.requested` (no email) are on the topic before the service starts. When it
has announced some of them, it gets SIGKILL (no shutdown code: nothing flushed or committed on
the way out), and a new process of the same consumer group takes over from the last committed
offsets.

What is counted, and why: the service runs on `MONGO_URI=memory://`, whose store dies with the
process, so the notifications the first process stored cannot be counted after the kill. The
durable effect of handling a request is the `notification.created` event the service publishes
(through the outbox, before the offset is committed); a notification's id is its request's
event id. So: `stored` = distinct notification ids among the `notification.created` events of
this test's 1,000 requests, which must be all of them; `duplicated` = records beyond the first
per notification id. A request handled but not yet committed when the process died is
delivered again and announced again with the same notification id: a duplicate delivery (which
consumers absorb on the id), never a second notification. Offsets are committed after each
batch here (CONSUMER_BATCH_MAX_RECORDS, small; KAFKA_COMMIT_INTERVAL_MS=0), so at most the
batch in hand at the kill is announced twice. (With the default interval a crash delivers again
what was handled since the last commit, up to a second's worth: against MongoDB, which outlives
the process, those are stored already and announced nothing new; this store dies with it.)
`dlq` = records on `notification.requested.dlq` (none expected).
"""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from shared.events.envelope import Envelope
from shared.events.models import NotificationCreated, NotificationRequested
from shared.events.topics import dead_letter_topic
from tests.fault.conftest import (
    FaultBroker,
    ServiceProcess,
    Tally,
    distinct_and_duplicates,
    ids_on,
    report,
    requested,
)
from tests.fixtures.parts import eventually, read_all

pytestmark = [pytest.mark.fault, pytest.mark.timeout(170)]

EVENTS = 1_000
USERS = 20
# Kill once this many are announced: well inside the run, whatever the machine's speed.
KILL_AFTER = 150
FINISH_TIMEOUT_SECONDS = 120.0
# One member of a killed process stays in the group until its session expires: keep it short.
SESSION_TIMEOUT_MS = 3000
# The relay's periodic pass could race the handler's own flush of the same notification and
# publish it twice; slowed down here so that every duplicate on the topic is one the kill made.
RELAY_INTERVAL_SECONDS = 300.0
# Small batches keep the kill in the middle of the run, and bound what is announced twice.
BATCH_MAX_RECORDS = 50


def _requests(run: str) -> list[Envelope]:
    return [
        requested(f"kill-{run}-{n % USERS}", f"event {n}", f"kill-{run}-{n}") for n in range(EVENTS)
    ]


async def _announced(broker: str) -> int:
    """How many records `notification.created` holds (cheap: end offsets only)."""
    reader = AIOKafkaConsumer(bootstrap_servers=broker, enable_auto_commit=False)
    await reader.start()
    try:
        partitions = [
            TopicPartition(NotificationCreated.topic, p)
            for p in reader.partitions_for_topic(NotificationCreated.topic) or ()
        ]
        return sum((await reader.end_offsets(partitions)).values()) if partitions else 0
    finally:
        await reader.stop()


async def test_kill_9_in_the_middle_loses_nothing_and_repeats_at_most_the_batch_in_hand(
    fault_broker: FaultBroker, tmp_path: Path
) -> None:
    run = secrets.token_hex(4)
    requests = _requests(run)
    expected = {str(e.id) for e in requests}
    producer = AIOKafkaProducer(bootstrap_servers=fault_broker.direct, acks="all", linger_ms=5)
    await producer.start()
    try:
        sends = [
            await producer.send(
                NotificationRequested.topic,
                value=envelope.to_bytes(),
                key=envelope.data["user_id"].encode(),
            )
            for envelope in requests
        ]
        for sent in sends:
            await sent
    finally:
        await producer.stop()

    env = {
        "KAFKA_BROKER": fault_broker.advertised,
        "KAFKA_SESSION_TIMEOUT_MS": str(SESSION_TIMEOUT_MS),
        "OUTBOX_RELAY_INTERVAL_SECONDS": str(RELAY_INTERVAL_SECONDS),
        "CONSUMER_BATCH_MAX_RECORDS": str(BATCH_MAX_RECORDS),
        "KAFKA_COMMIT_INTERVAL_MS": "0",  # every batch committed: the bound below is one batch
    }
    first = ServiceProcess("notification_service", env, tmp_path / "first.log")
    second = ServiceProcess("notification_service", env, tmp_path / "second.log")
    try:
        await first.start()
        await eventually(
            lambda: _more_than(fault_broker.direct, KILL_AFTER),
            timeout=60,
            interval=0.05,
            what=f"{KILL_AFTER} notifications announced before the kill",
        )
        first.kill()
        at_kill = await _announced(fault_broker.direct)

        await second.start()

        async def created_ids() -> list[str]:
            topic = NotificationCreated.topic
            return await ids_on(fault_broker.direct, topic, "notification_id", expected)

        async def all_announced() -> bool:
            return set(await created_ids()) == expected

        try:
            await eventually(
                all_announced,
                timeout=FINISH_TIMEOUT_SECONDS,
                interval=1.0,
                what="every request announced after the restart",
            )
        finally:
            distinct, duplicated = distinct_and_duplicates(await created_ids())
            dlq = await read_all(
                fault_broker.direct, dead_letter_topic(NotificationRequested.topic)
            )
            report(Tally(EVENTS, len(distinct), duplicated, len(dlq)))
            print(f"announced when killed: {at_kill}")
    finally:
        first.kill()
        second.stop()

    assert at_kill < EVENTS, "the kill came after the last event: it tested nothing"
    assert distinct == expected
    assert duplicated <= BATCH_MAX_RECORDS, "more than the batch in hand at the kill came twice"
    assert dlq == []


async def _more_than(broker: str, count: int) -> bool:
    return await _announced(broker) > count
