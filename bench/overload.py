"""Issue 16 (6): overload is refused, not queued. `placeOrder` through the gateway at a fixed
arrival rate (open loop: a request leaves on schedule whether or not earlier ones were
answered; bench/open_loop.py's lean client, cheap enough not to measure itself), set at twice
what the bench's placeOrder phase held; every answer is tallied as accepted (an order id),
refused (SERVICE_UNAVAILABLE: the gateway's 503, or a service's refusal passed on as the
field's error) or an error (anything else, the client's timeouts included). Afterwards each
customer's orders are read back from the order service: every accepted order must be stored.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

from bench.open_loop import ACCEPTED, ERROR, REFUSED, OrderPlacer, at_fixed_rate, spread
from bench.readback import stored_order_ids

# A real id of the shipped catalog (orders of unknown ids are refused).
PRODUCTS = [{"productId": "9"}]
HTTP_TIMEOUT_SECONDS = 10.0


async def measure_overload(
    graphql_url: str,
    order_service_url: str,
    tokens: list[str],
    *,
    rate: float,
    seconds: float,
) -> dict[str, Any]:
    """`rate` placeOrder a second for `seconds` (round robin over `tokens`, customers with no
    orders yet); the tallies, the latencies of accepted and refused answers, and whether every
    accepted order is stored."""
    outcomes: Counter[str] = Counter()
    error_kinds: Counter[str] = Counter()
    accepted_ids: list[str] = []
    accepted_ms: list[float] = []
    refused_ms: list[float] = []
    placer = OrderPlacer(
        graphql_url,
        tokens,
        PRODUCTS,
        timeout_seconds=HTTP_TIMEOUT_SECONDS,
    )

    async def place(i: int) -> None:
        placed = await placer.place(i)
        outcomes[placed.outcome] += 1
        if placed.outcome == ACCEPTED:
            accepted_ids.append(placed.detail)
            accepted_ms.append(placed.elapsed_ms)
        elif placed.outcome == REFUSED:
            refused_ms.append(placed.elapsed_ms)
        else:
            error_kinds[placed.detail] += 1

    total = int(rate * seconds)
    t0 = time.monotonic()
    driver_cpu_before = time.process_time()
    try:
        sent = await at_fixed_rate(rate, total, place)
    finally:
        placer.close()
    answered_seconds = time.monotonic() - t0
    driver_cpu_seconds = time.process_time() - driver_cpu_before
    stored = await stored_order_ids(order_service_url, tokens)
    accepted = set(accepted_ids)
    return {
        "target_rate_per_s": round(rate, 1),
        "seconds": seconds,
        "sent": total,
        # offered_rate_per_s below the target: the driver itself could not keep the schedule.
        **sent.figures(total),
        "accepted": outcomes[ACCEPTED],
        "refused": outcomes[REFUSED],
        "errors": outcomes[ERROR],
        "error_kinds": dict(error_kinds),
        "accepted_per_s": round(outcomes[ACCEPTED] / answered_seconds, 1),
        # The driver shares the machine with the fleet: what it takes, the fleet does not get.
        "driver_cpu_percent": round(driver_cpu_seconds * 100 / answered_seconds, 1),
        "answered_seconds": round(answered_seconds, 2),
        "accepted_latency": spread(accepted_ms),
        "refused_latency": spread(refused_ms),
        # Accepted but not stored: lost. Stored but not accepted: an answer the client did not
        # get (its timeout), not a loss.
        "accepted_not_stored": len(accepted - stored),
        "stored_not_accepted": len(stored - accepted),
    }
