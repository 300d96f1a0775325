"""shared/bus.py's handling steps: tried once plainly, retried (tenacity) only while the broker
is away, so the events of a healthy broker leave no retrying objects to the garbage collector."""

from __future__ import annotations

from typing import Any

import pytest
from aiokafka.errors import KafkaConnectionError

from shared import bus
from shared.bus import EventConsumer
from shared.publisher import EventPublisher
from tests.fixtures.bus import bus_settings


def consumer() -> EventConsumer:
    settings = bus_settings("127.0.0.1:1", service_name="delivery-test")
    return EventConsumer(settings, EventPublisher(settings), {}, group_id="delivery-test")


async def test_a_step_that_succeeds_builds_no_retrying(monkeypatch: pytest.MonkeyPatch) -> None:
    built: list[Any] = []
    real = bus.AsyncRetrying
    monkeypatch.setattr(bus, "AsyncRetrying", lambda **kw: built.append(kw) or real(**kw))

    async def step(value: int) -> int:
        return value + 1

    assert await consumer()._until_delivered(step, 1) == 2
    assert built == []


async def test_a_step_the_broker_fails_is_retried_until_it_succeeds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(bus, "_MAX_RETRY_WAIT_SECONDS", 0.01)
    calls: list[int] = []

    async def step() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise KafkaConnectionError("the broker is away (injected)")
        return "delivered"

    assert await consumer()._until_delivered(step) == "delivered"
    assert len(calls) == 3


async def test_any_other_failure_is_not_retried() -> None:
    calls: list[int] = []

    async def step() -> None:
        calls.append(1)
        raise ValueError("a bug")

    with pytest.raises(ValueError, match="a bug"):
        await consumer()._until_delivered(step)
    assert calls == [1]
