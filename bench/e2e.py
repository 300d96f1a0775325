"""Issue 8 (c): end-to-end latency from `placeOrder` returning to the customer's order
notification, at a steady rate of orders, through the gateway only.

The chain: placeOrder -> order.placed -> user_service -> notification.requested ->
notification_service stores it -> notification.created -> gateway -> `notificationAdded` on the
customer's graphql-transport-ws subscription.

Two latencies from `placeOrder` returning: "stored" ends at the notification's `sentAt` (the
notification service's wall clock as it stores the batch holding it, just before the insert;
carried by the subscription; same machine, hence the bench's clock), which is what issue 8 (c)
asks; "delivered" ends when the subscription hands it to the customer, an upper bound adding
the insert and notification.created -> gateway -> socket.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx
import websockets

from bench.open_loop import at_fixed_rate, percentile
from user_service.domain import short_order_id

PROTOCOL = websockets.Subprotocol("graphql-transport-ws")
SUBSCRIPTION = "subscription { notificationAdded { type content sentAt } }"
PLACE = """mutation Place($products: [ProductInput!]!) {
  placeOrder(products: $products) { id } }"""
# A real id of the shipped catalog (orders of unknown ids are refused).
PRODUCTS = [{"productId": "8"}]
ACK_TIMEOUT_SECONDS = 10.0
HTTP_TIMEOUT_SECONDS = 10.0
_WORD = re.compile(r"[\w-]+")
DRAIN_POLL_SECONDS = 0.1


@dataclass(frozen=True, slots=True)
class Arrival:
    """When a notification reached the customer (monotonic) and when it was stored (epoch)."""

    delivered: float
    stored: float


@dataclass(frozen=True, slots=True)
class Returned:
    """When `placeOrder` returned, on both clocks."""

    monotonic: float
    epoch: float


async def _listen(url: str, token: str, arrivals: dict[str, Arrival], ready: asyncio.Event) -> None:
    async with websockets.connect(url, subprotocols=[PROTOCOL]) as ws:
        await ws.send(
            json.dumps({"type": "connection_init", "payload": {"Authorization": f"Bearer {token}"}})
        )
        ack = json.loads(await asyncio.wait_for(ws.recv(), ACK_TIMEOUT_SECONDS))
        if ack.get("type") != "connection_ack":
            raise RuntimeError(f"subscription refused: {ack}")
        await ws.send(
            json.dumps({"id": "n", "type": "subscribe", "payload": {"query": SUBSCRIPTION}})
        )
        ready.set()
        async for raw in ws:
            now = time.monotonic()
            message = json.loads(raw)
            if message.get("type") != "next":
                continue
            notification = message["payload"]["data"]["notificationAdded"]
            stored = datetime.fromisoformat(notification["sentAt"]).timestamp()
            for word in _WORD.findall(notification["content"]):
                arrivals.setdefault(word, Arrival(delivered=now, stored=stored))


async def measure_e2e(
    graphql_url: str, tokens: list[str], *, rate: float, seconds: float, drain_seconds: float
) -> dict[str, Any]:
    """Place `rate` orders a second for `seconds`, round robin over the customers of `tokens`;
    p50/p99 of returned -> stored (`stored_*`) and -> delivered (`p50_ms`, `p99_ms`), and how
    many never arrived within `drain_seconds`."""
    ws_url = graphql_url.replace("http://", "ws://", 1)
    arrivals: dict[str, Arrival] = {}
    readies = [asyncio.Event() for _ in tokens]
    listeners = [
        asyncio.create_task(_listen(ws_url, token, arrivals, ready))
        for token, ready in zip(tokens, readies, strict=True)
    ]
    await asyncio.wait_for(asyncio.gather(*(r.wait() for r in readies)), ACK_TIMEOUT_SECONDS)
    returned: dict[str, Returned] = {}
    failures = 0
    place_ms: list[float] = []

    async def place(client: httpx.AsyncClient, token: str) -> None:
        nonlocal failures
        started = time.monotonic()
        try:
            answer = await client.post(
                graphql_url,
                json={"query": PLACE, "variables": {"products": PRODUCTS}},
                headers={"authorization": f"Bearer {token}"},
            )
            order_id = answer.json()["data"]["placeOrder"]["id"]
        except (httpx.HTTPError, KeyError, TypeError, ValueError):
            failures += 1
            return
        done = Returned(monotonic=time.monotonic(), epoch=time.time())
        returned[order_id] = done
        place_ms.append((done.monotonic - started) * 1000)

    async with httpx.AsyncClient(timeout=HTTP_TIMEOUT_SECONDS) as client:
        # A subscription listens a moment after `subscribe`: one order per customer first, and
        # the run starts once every one of those was notified.
        await asyncio.gather(*(place(client, token) for token in tokens))
        warm_deadline = time.monotonic() + drain_seconds
        while time.monotonic() < warm_deadline and any(  # noqa: ASYNC110
            short_order_id(oid) not in arrivals for oid in returned
        ):
            await asyncio.sleep(DRAIN_POLL_SECONDS)
        if failures or any(short_order_id(oid) not in arrivals for oid in returned):
            for task in listeners:
                task.cancel()
            errors = await asyncio.gather(*listeners, return_exceptions=True)
            raise RuntimeError(f"warm-up orders were not notified (listeners: {errors})")
        returned.clear()
        place_ms.clear()
    total = int(rate * seconds)
    limits = httpx.Limits(max_connections=max(1, int(rate * 2)))
    async with httpx.AsyncClient(timeout=HTTP_TIMEOUT_SECONDS, limits=limits) as client:
        t0 = time.monotonic()
        await at_fixed_rate(rate, total, lambda i: place(client, tokens[i % len(tokens)]))
        sent_seconds = time.monotonic() - t0
    deadline = time.monotonic() + drain_seconds
    # arrivals come from many listener tasks: poll (ASYNC110)
    while time.monotonic() < deadline and any(  # noqa: ASYNC110
        short_order_id(oid) not in arrivals for oid in returned
    ):
        await asyncio.sleep(DRAIN_POLL_SECONDS)
    for task in listeners:
        task.cancel()
    await asyncio.gather(*listeners, return_exceptions=True)
    pairs = [
        (arrivals[short_order_id(oid)], at)
        for oid, at in returned.items()
        if short_order_id(oid) in arrivals
    ]
    delivered = [(arrival.delivered - at.monotonic) * 1000 for arrival, at in pairs]
    stored = [(arrival.stored - at.epoch) * 1000 for arrival, at in pairs]
    result: dict[str, Any] = {
        "rate_per_s": rate,
        "seconds": seconds,
        "achieved_rate_per_s": round(len(returned) / sent_seconds, 1),
        "orders_placed": len(returned),
        "place_failures": failures,
        "notified": len(pairs),
        "missing_after_drain": len(returned) - len(pairs),
    }
    if place_ms:
        result["placeOrder_p50_ms"] = round(percentile(place_ms, 50), 1)
        result["placeOrder_p99_ms"] = round(percentile(place_ms, 99), 1)
    if pairs:
        # "stored" is issue 8 (c)'s figure; p50_ms/p99_ms (delivered) bound it from above.
        result["stored_p50_ms"] = round(percentile(stored, 50), 1)
        result["stored_p99_ms"] = round(percentile(stored, 99), 1)
        result["stored_max_ms"] = round(max(stored), 1)
        result["p50_ms"] = round(percentile(delivered, 50), 1)
        result["p99_ms"] = round(percentile(delivered, 99), 1)
        result["max_ms"] = round(max(delivered), 1)
    return result
