"""A refused offset commit (a rebalance, the broker away) must not end the consumer: the
message is already handled, the next commit covers it, and consumption goes on."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from aiokafka.errors import CommitFailedError

from shared.bus import EventConsumer
from shared.events import Envelope, NotificationCreated
from shared.publisher import EventPublisher
from tests.fault.conftest import FaultBroker, Tally, distinct_and_duplicates, report
from tests.fixtures.bus import bus_settings
from tests.fixtures.parts import eventually

pytestmark = [pytest.mark.fault, pytest.mark.timeout(60)]

EVENTS = 5


async def test_a_refused_commit_does_not_stop_consumption(fault_broker: FaultBroker) -> None:
    settings = bus_settings(fault_broker.direct, service_name="commit-fault")
    publisher = EventPublisher(settings)
    await publisher.start()
    seen: list[str] = []

    async def handler(envelope: Envelope, event: Any) -> None:
        seen.append(str(envelope.id))

    consumer = EventConsumer(
        settings,
        publisher,
        {NotificationCreated.topic: handler},
        group_id=f"commit-fault-{uuid.uuid4().hex[:8]}",
    )
    real_commit = consumer._consumer.commit
    refused: list[Any] = []

    async def commit_refused_once(offsets: Any = None) -> None:
        if not refused:
            refused.append(offsets)
            raise CommitFailedError("the group rebalanced (injected)")
        await real_commit(offsets)

    consumer._consumer.commit = commit_refused_once
    await consumer.start()
    try:
        await eventually(consumer.assigned, what="partition assignment")
        sent = [
            await publisher.publish(
                NotificationCreated(
                    notification_id=uuid.uuid4().hex,
                    user_id="commit-fault-user",
                    type="other",
                    content=f"event {n}",
                    sent_at=datetime.now(UTC),
                )
            )
            for n in range(EVENTS)
        ]
        expected = {str(e.id) for e in sent}
        await eventually(lambda: expected <= set(seen), what="every event handled")
        distinct, duplicated = distinct_and_duplicates(i for i in seen if i in expected)
        report(Tally(EVENTS, len(distinct), duplicated, 0))
        assert refused, "the injected commit failure never happened"
        assert consumer.ready(), "the consumer stopped after a refused commit"
    finally:
        await consumer.stop()
        await publisher.stop()
