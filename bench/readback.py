"""Reading back what a phase of the bench made: the orders the order service stored for some
customers, and the records a topic holds for some keys (bench/overload.py, bench/run.py's
placeOrder phase, bench/consumer.py)."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

HTTP_TIMEOUT_SECONDS = 10.0
# The order service's largest page (ORDERS_PAGE_MAX's default).
PAGE = 100
# A topic is read until nothing new arrived for this long (Tansu's end offsets cannot be trusted
# for batched records, docs/BROKER.md).
IDLE_SECONDS = 3.0
FETCH_MS = 500


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


async def topic_data(
    bootstrap: str, topic: str, wanted_key: Callable[[bytes], bool], deadline: float
) -> list[dict]:
    """The `data` of every envelope on `topic` whose key `wanted_key` accepts, from the start."""
    found: list[dict] = []
    reader = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await reader.start()
    try:
        partitions = [TopicPartition(topic, p) for p in reader.partitions_for_topic(topic) or ()]
        reader.assign(partitions)
        await reader.seek_to_beginning(*partitions)
        idle_since = time.monotonic()
        while time.monotonic() - idle_since < IDLE_SECONDS and time.monotonic() < deadline:
            batches = await reader.getmany(timeout_ms=FETCH_MS)
            if any(batches.values()):
                idle_since = time.monotonic()
            for records in batches.values():
                for record in records:
                    if record.key and wanted_key(record.key):
                        found.append(orjson.loads(record.value)["data"])
    finally:
        await reader.stop()
    return found
