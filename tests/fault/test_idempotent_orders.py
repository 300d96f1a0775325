"""Fault: placeOrder retried with its idempotency key while the broker is unreachable.

The order service runs as a real process whose only way to the broker is a proxy the test
cuts. Every order is asked for three times with the same key, as a client does when an answer
is lost or slow: twice at once (racing) and once more afterwards; before, during and after a
broker outage. Each key must make exactly one order: the three answers name the same order,
the service lists one order per key, and `order.placed` announces each order (from the outbox,
once the broker is back), never a second order of the same key.

Counted: `sent` = keys used (one order meant by each); `stored` = distinct orders announced on
`order.placed`; `duplicated` = records beyond the first per order (a publish that timed out may
still have reached the broker before the relay sent it again: the same event id, harmless);
`dlq` = records on `order.placed.dlq` (nothing consumes here, so 0).
"""

from __future__ import annotations

import asyncio
import secrets
import time
import uuid
from pathlib import Path

import httpx
import pytest

from shared.events.models import OrderPlaced
from shared.events.topics import dead_letter_topic
from tests.fault.conftest import (
    DELIVERY_TIMEOUT_SECONDS,
    GATEWAY_PATIENCE_SECONDS,
    FaultBroker,
    Tally,
    distinct_and_duplicates,
    envelopes_on,
    outbox_service,
    report,
)
from tests.fixtures.parts import eventually, read_all, signed_token

pytestmark = [pytest.mark.fault, pytest.mark.timeout(150)]

OUTAGE_SECONDS = 10.0
BEFORE_AND_AFTER = 3


async def _order_three_times(client: httpx.AsyncClient, key: str, n: int) -> str:
    """Place one order (a real catalog id) three times under `key`; its id."""
    body = {"products": [{"productId": str(1 + n % 70), "quantity": 2}], "idempotencyKey": key}
    racing = await asyncio.gather(*(client.post("/orders", json=body) for _ in range(2)))
    again = await client.post("/orders", json=body)
    answers = [*racing, again]
    for answer in answers:
        assert answer.status_code == 201, f"placeOrder failed: {answer.status_code} {answer.text}"
    ids = {answer.json()["id"] for answer in answers}
    assert len(ids) == 1, f"key {key} made {len(ids)} orders: {sorted(ids)}"
    return ids.pop()


async def test_retried_orders_make_one_order_per_key_through_a_broker_outage(
    proxied_broker: FaultBroker, tmp_path: Path
) -> None:
    proxy = proxied_broker.proxy
    assert proxy is not None
    service = outbox_service("order_service", proxied_broker, tmp_path)
    await service.start()
    user_id = uuid.uuid4().hex
    token = signed_token(user_id, f"{user_id}@example.com", ["customer"])
    run = secrets.token_hex(4)
    orders: dict[str, str] = {}  # key -> order id
    counter = iter(range(1_000_000))
    try:
        async with httpx.AsyncClient(
            base_url=service.url,
            timeout=GATEWAY_PATIENCE_SECONDS,
            headers={"Authorization": f"Bearer {token}"},
        ) as client:

            async def order_once() -> None:
                n = next(counter)
                key = f"checkout-{run}-{n}"
                orders[key] = await _order_three_times(client, key, n)

            for _ in range(BEFORE_AND_AFTER):
                await order_once()
            await proxy.cut()
            outage_ends = time.monotonic() + OUTAGE_SECONDS
            while time.monotonic() < outage_ends:
                await order_once()
            during = len(orders) - BEFORE_AND_AFTER
            await proxy.restore()
            for _ in range(BEFORE_AND_AFTER):
                await order_once()
            listed = (await client.get("/orders", params={"limit": 100})).json()

        expected = set(orders.values())

        async def announced() -> bool:
            envelopes = await envelopes_on(proxied_broker.direct, OrderPlaced.topic)
            return {e.data["order_id"] for e in envelopes} >= expected

        try:
            await eventually(
                announced,
                timeout=DELIVERY_TIMEOUT_SECONDS,
                interval=1.0,
                what="every order's order.placed on the topic",
            )
        finally:
            envelopes = await envelopes_on(proxied_broker.direct, OrderPlaced.topic)
            mine = [e.data["order_id"] for e in envelopes if e.data["user_id"] == user_id]
            distinct, duplicated = distinct_and_duplicates(mine)
            dlq = await read_all(proxied_broker.direct, dead_letter_topic(OrderPlaced.topic))
            report(Tally(len(orders), len(distinct), duplicated, len(dlq)))
            print(f"keyed orders during the {OUTAGE_SECONDS:.0f} s outage: {during}")
        assert during > 0, "no order was placed while the broker was unreachable"
        assert distinct == expected, f"unexpected orders: {sorted(distinct ^ expected)}"
        assert sorted(o["id"] for o in listed) == sorted(expected)  # one order per key
        assert dlq == []
    finally:
        service.stop()
