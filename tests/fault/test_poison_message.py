"""Fault (d): poison messages on a consumed topic, with real events behind them.

The notification service runs as a real process. On one partition of `notification.requested`
the test writes a message that is not JSON, one whose envelope is fine but whose payload breaks
the schema, then valid requests. The poison goes to `notification.requested.dlq` at once (no
handler attempt) with the headers naming the error, the attempt count, where it came from and
when it first failed; the valid requests behind it on the same partition are still handled.

Counted: `sent` = messages written; `stored` = distinct notification ids among the
`notification.created` events of the valid requests (a notification's id is its request's
event id); `duplicated` = records beyond the first per notification; `dlq` = dead letters of
this test's messages.
"""

from __future__ import annotations

import secrets
from datetime import datetime
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from shared.events.envelope import Envelope
from shared.events.models import NotificationCreated, NotificationRequested
from shared.events.topics import dead_letter_topic
from tests.fault.conftest import (
    FaultBroker,
    ServiceProcess,
    Tally,
    distinct_and_duplicates,
    headers_of,
    ids_on,
    report,
    requested,
)
from tests.fixtures.parts import eventually, read_all

pytestmark = [pytest.mark.fault, pytest.mark.timeout(120)]

PARTITION = 0
VALID_AFTER = 5
TOPIC = NotificationRequested.topic


def _request(user_id: str, n: int) -> Envelope:
    return requested(user_id, f"after the poison {n}", f"poison-{user_id}-{n}")


async def test_poison_goes_to_the_dlq_and_the_partition_moves_on(
    fault_broker: FaultBroker, tmp_path: Path
) -> None:
    service = ServiceProcess(
        "notification_service",
        {"KAFKA_BROKER": fault_broker.advertised, "OUTBOX_RELAY_INTERVAL_SECONDS": "0.5"},
        tmp_path / "notification_service.log",
    )
    await service.start()
    user_id = f"poison-user-{secrets.token_hex(4)}"
    not_json = b"\xff this is not json {"
    wrong_schema = Envelope(
        type=NotificationRequested.event_type,
        source="fault-test",
        correlation_id=f"poison-{user_id}",
        data={"user_id": user_id, "type": "no-such-type"},  # no content, unknown type
    ).to_bytes()
    valid = [_request(user_id, n) for n in range(VALID_AFTER)]
    producer = AIOKafkaProducer(bootstrap_servers=fault_broker.direct, acks="all")
    await producer.start()
    try:
        offsets = {}
        for name, value in (("not_json", not_json), ("wrong_schema", wrong_schema)):
            sent = await producer.send_and_wait(
                TOPIC, value=value, key=user_id.encode(), partition=PARTITION
            )
            offsets[name] = sent.offset
        for envelope in valid:
            await producer.send_and_wait(
                TOPIC, value=envelope.to_bytes(), key=user_id.encode(), partition=PARTITION
            )
    finally:
        await producer.stop()

    expected = {str(e.id) for e in valid}
    try:

        async def created_ids() -> list[str]:
            topic = NotificationCreated.topic
            return await ids_on(fault_broker.direct, topic, "notification_id", expected)

        async def all_created() -> bool:
            return set(await created_ids()) == expected

        await eventually(all_created, timeout=60, interval=0.5, what="the valid requests handled")
        dead = [
            r
            for r in await read_all(fault_broker.direct, dead_letter_topic(TOPIC))
            if r.key == user_id.encode()
        ]
        distinct, duplicated = distinct_and_duplicates(await created_ids())
        report(Tally(2 + VALID_AFTER, len(distinct), duplicated, len(dead)))
    finally:
        service.stop()

    assert distinct == expected
    assert duplicated == 0
    assert [r.value for r in dead] == [not_json, wrong_schema]
    for record, name in zip(dead, ("not_json", "wrong_schema"), strict=True):
        headers = headers_of(record)
        assert headers["dlq_original_topic"] == TOPIC
        assert headers["dlq_original_partition"] == str(PARTITION)
        assert headers["dlq_original_offset"] == str(offsets[name])
        assert headers["dlq_attempts"] == "0", "a poison message is never handed to a handler"
        assert "EnvelopeError" in headers["dlq_error"] or "ValidationError" in headers["dlq_error"]
        assert datetime.fromisoformat(headers["dlq_first_failure"]).tzinfo is not None
    assert orjson.loads(dead[1].value)["data"]["type"] == "no-such-type"
