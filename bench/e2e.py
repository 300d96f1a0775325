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

Orders leave on a fixed schedule (open loop) from bench/open_loop.py's lean keep-alive client,
as in the overload phase: httpx could not keep 100 orders/s. `offered_rate_per_s` below the
rate, or a large `driver_max_behind_schedule_ms`, means the driver fell behind, not the fleet.

`python -m bench.e2e --state-file F [--rate R --seconds S]` runs it alone against a running
`python -m devstack` (started with PLACE_ORDER_LIMIT_PER_USER raised, as bench/run.py does).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
import time
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import websockets

from bench.open_loop import (
    ACCEPTED,
    REFUSED,
    UNAVAILABLE,
    OrderPlacer,
    at_fixed_rate,
    spread,
)
from user_service.domain import short_order_id

PROTOCOL = websockets.Subprotocol("graphql-transport-ws")
SUBSCRIPTION = "subscription { notificationAdded { type content sentAt } }"
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


def _unnotified(returned: dict[str, Returned], arrivals: dict[str, Arrival]) -> int:
    return sum(1 for oid in returned if short_order_id(oid) not in arrivals)


async def _until_notified(
    returned: dict[str, Returned], arrivals: dict[str, Arrival], seconds: float
) -> None:
    """Wait (at most `seconds`) until every order of `returned` was notified."""
    deadline = time.monotonic() + seconds
    # arrivals come from many listener tasks: poll (ASYNC110)
    while time.monotonic() < deadline and _unnotified(returned, arrivals):  # noqa: ASYNC110
        await asyncio.sleep(DRAIN_POLL_SECONDS)


async def measure_e2e(
    graphql_url: str, tokens: list[str], *, rate: float, seconds: float, drain_seconds: float
) -> dict[str, Any]:
    """Place `rate` orders a second for `seconds`, round robin over the customers of `tokens`;
    p50/p99 of returned -> stored (`stored_*`) and -> delivered (`p50_ms`, `p99_ms`), how
    many never arrived within `drain_seconds`, the placeOrder answers' latency and failures,
    and whether the driver kept its schedule."""
    ws_url = graphql_url.replace("http://", "ws://", 1)
    arrivals: dict[str, Arrival] = {}
    readies = [asyncio.Event() for _ in tokens]
    listeners = [
        asyncio.create_task(_listen(ws_url, token, arrivals, ready))
        for token, ready in zip(tokens, readies, strict=True)
    ]
    placer = OrderPlacer(graphql_url, tokens, PRODUCTS, timeout_seconds=HTTP_TIMEOUT_SECONDS)
    returned: dict[str, Returned] = {}
    place_ms: list[float] = []
    failures: Counter[str] = Counter()

    async def place(i: int) -> None:
        placed = await placer.place(i)
        if placed.outcome != ACCEPTED:
            failures[UNAVAILABLE if placed.outcome == REFUSED else placed.detail] += 1
            return
        returned[placed.detail] = Returned(monotonic=time.monotonic(), epoch=time.time())
        place_ms.append(placed.elapsed_ms)

    total = int(rate * seconds)
    try:
        await asyncio.wait_for(asyncio.gather(*(r.wait() for r in readies)), ACK_TIMEOUT_SECONDS)
        # A subscription listens a moment after `subscribe`: one order per customer first, and
        # the run starts once every one of those was notified.
        await asyncio.gather(*(place(i) for i in range(len(tokens))))
        await _until_notified(returned, arrivals, drain_seconds)
        if failures or _unnotified(returned, arrivals):
            ended = [task.exception() for task in listeners if task.done()]
            raise RuntimeError(
                f"warm-up orders were not notified (failed: {dict(failures)}, "
                f"listeners ended: {ended})"
            )
        returned.clear()
        place_ms.clear()
        t0 = time.monotonic()
        sent = await at_fixed_rate(rate, total, place)
        answered_seconds = time.monotonic() - t0
        await _until_notified(returned, arrivals, drain_seconds)
    finally:
        placer.close()
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
    return {
        "rate_per_s": rate,
        "seconds": seconds,
        "sent": total,
        # offered_rate_per_s below rate_per_s: the driver itself could not keep the schedule.
        **sent.figures(total),
        "achieved_rate_per_s": round(len(returned) / answered_seconds, 1),
        "orders_placed": len(returned),
        "place_failures": sum(failures.values()),
        "place_error_kinds": dict(failures),
        "notified": len(pairs),
        # Placed but never notified: lost (target 0).
        "missing_after_drain": len(returned) - len(pairs),
        **{f"placeOrder_{key}": value for key, value in spread(place_ms).items()},
        # "stored" is issue 8 (c)'s figure; p50_ms/p99_ms (delivered) bound it from above.
        **{f"stored_{key}": value for key, value in spread(stored).items()},
        **spread(delivered),
    }


def main() -> None:
    from bench.run import E2E_DRAIN_SECONDS, E2E_RATE, E2E_SECONDS, E2E_USERS, customers

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--state-file",
        required=True,
        help="state file of a running `python -m devstack` (its per-user placeOrder limit "
        "raised: PLACE_ORDER_LIMIT_PER_USER=100000000/minute)",
    )
    parser.add_argument("--rate", type=float, default=E2E_RATE, help="orders a second")
    parser.add_argument("--seconds", type=float, default=E2E_SECONDS)
    parser.add_argument("--users", type=int, default=E2E_USERS, help="subscribed customers")
    parser.add_argument(
        "--drain", type=float, default=E2E_DRAIN_SECONDS, help="seconds to wait for stragglers"
    )
    args = parser.parse_args()
    url = json.loads(Path(args.state_file).read_text())["graphql"]
    result = asyncio.run(
        measure_e2e(
            url,
            customers(url, args.users),
            rate=args.rate,
            seconds=args.seconds,
            drain_seconds=args.drain,
        )
    )
    print(json.dumps(result, indent=2))
    sys.exit(1 if result["place_failures"] or result["missing_after_drain"] else 0)


if __name__ == "__main__":
    main()
