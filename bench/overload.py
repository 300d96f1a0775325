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
from urllib.parse import urlsplit

import httpx
import orjson

from bench.open_loop import KeepAliveClient, at_fixed_rate, percentile

PLACE = """mutation Place($products: [ProductInput!]!) {
  placeOrder(products: $products) { id } }"""
# A real id of the shipped catalog (orders of unknown ids are refused).
PRODUCTS = [{"productId": "9"}]
HTTP_TIMEOUT_SECONDS = 10.0
# Connections the driver may open: far more than the gateway admits (its requests in
# progress and waiting), so the driver itself never holds a request back.
DRIVER_CONNECTIONS = 400
UNAVAILABLE = "SERVICE_UNAVAILABLE"
# The order service's largest page (ORDERS_PAGE_MAX's default).
PAGE = 100


def _spread(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    return {
        "p50_ms": round(percentile(values, 50), 1),
        "p99_ms": round(percentile(values, 99), 1),
        "max_ms": round(max(values), 1),
    }


def classify(status: int, content: bytes) -> tuple[str, str]:
    """("accepted", order id), ("refused", "") or ("error", what went wrong) for an answer."""
    try:
        body = orjson.loads(content)
    except orjson.JSONDecodeError:
        return "error", f"HTTP {status}, not JSON"
    if not isinstance(body, dict):
        return "error", f"HTTP {status}, not a GraphQL answer"
    placed = (body.get("data") or {}).get("placeOrder")
    if isinstance(placed, dict) and isinstance(placed.get("id"), str):
        return "accepted", placed["id"]
    codes = {(error.get("extensions") or {}).get("code") for error in body.get("errors") or [{}]}
    if codes == {UNAVAILABLE}:
        return "refused", ""
    return "error", f"HTTP {status}, {sorted(str(code) for code in codes)}"


async def stored_order_ids(order_service_url: str, tokens: list[str]) -> set[str]:
    """Every order of the customers of `tokens`, read page by page from the order service."""
    ids: set[str] = set()
    async with httpx.AsyncClient(base_url=order_service_url, timeout=HTTP_TIMEOUT_SECONDS) as http:
        for token in tokens:
            offset = 0
            while True:
                answer = await http.get(
                    "/orders",
                    params={"limit": PAGE, "offset": offset},
                    headers={"authorization": f"Bearer {token}"},
                )
                answer.raise_for_status()
                page = answer.json()
                ids.update(order["id"] for order in page)
                if len(page) < PAGE:
                    break
                offset += PAGE
    return ids


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

    target = urlsplit(graphql_url)
    client = KeepAliveClient(
        target.hostname or "127.0.0.1",
        target.port or 80,
        max_connections=DRIVER_CONNECTIONS,
        timeout_seconds=HTTP_TIMEOUT_SECONDS,
    )
    body = orjson.dumps({"query": PLACE, "variables": {"products": PRODUCTS}})
    requests = [
        client.post(
            target.path,
            body,
            {"content-type": "application/json", "authorization": f"Bearer {token}"},
        )
        for token in tokens
    ]

    async def place(request: bytes) -> None:
        started = time.monotonic()
        try:
            status, content = await client.send(request)
        except (ConnectionError, OSError, TimeoutError) as exc:
            outcomes["error"] += 1
            error_kinds[type(exc).__name__] += 1
            return
        elapsed_ms = (time.monotonic() - started) * 1000
        outcome, detail = classify(status, content)
        outcomes[outcome] += 1
        if outcome == "accepted":
            accepted_ids.append(detail)
            accepted_ms.append(elapsed_ms)
        elif outcome == "refused":
            refused_ms.append(elapsed_ms)
        else:
            error_kinds[detail] += 1

    total = int(rate * seconds)
    t0 = time.monotonic()
    try:
        sent = await at_fixed_rate(rate, total, lambda i: place(requests[i % len(requests)]))
    finally:
        client.close()
    answered_seconds = time.monotonic() - t0
    stored = await stored_order_ids(order_service_url, tokens)
    accepted = set(accepted_ids)
    return {
        "target_rate_per_s": round(rate, 1),
        "seconds": seconds,
        "sent": total,
        # Below the target when the driver itself could not keep the schedule.
        "offered_rate_per_s": round((total - 1) / sent.seconds, 1) if sent.seconds else None,
        "driver_max_behind_schedule_ms": round(sent.most_behind_seconds * 1000, 1),
        "accepted": outcomes["accepted"],
        "refused": outcomes["refused"],
        "errors": outcomes["error"],
        "error_kinds": dict(error_kinds),
        "accepted_per_s": round(outcomes["accepted"] / answered_seconds, 1),
        "accepted_latency": _spread(accepted_ms),
        "refused_latency": _spread(refused_ms),
        # Accepted but not stored: lost. Stored but not accepted: an answer the client did not
        # get (its timeout), not a loss.
        "accepted_not_stored": len(accepted - stored),
        "stored_not_accepted": len(stored - accepted),
    }
