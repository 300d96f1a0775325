"""Issue 8 (d): notification consumer throughput, in events stored per second.

N valid `NotificationRequested` events (in-app only, spread over `users` user ids) are produced
as fast as one batching producer can, then the clock runs until the notification service's
consumer group has committed past every one of them (it commits after the batch is stored).
Tansu's end offsets are wrong for batched records (docs/BROKER.md), so the offsets to reach
come from the producer's own acknowledgements, not from the broker's high watermark.
Afterwards `notification.created` is read back to check each event was announced exactly once.

    python -m bench.consumer                      # starts its own fleet, measures, stops it
    python -m bench.consumer --bootstrap H:P      # a fleet already running on that broker
    python -m bench.consumer --state-file F       # ... or the one described by a state file
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import RecordMetadata

from bench.readback import topic_data
from notification_service.events import CONSUMER_GROUP
from shared.events import Envelope, NotificationCreated, NotificationRequested

EVENTS = 50_000
USERS = 1_000
TIMEOUT_SECONDS = 120.0
POLL_SECONDS = 0.2
LINGER_MS = 20
MAX_BATCH_BYTES = 512 * 1024
SOURCE = "bench"


def _requests(run: str, events: int, users: int) -> list[tuple[bytes, bytes]]:
    """(key, value) of each event to produce; user ids carry the run id for the read-back."""
    out = []
    for n in range(events):
        user_id = f"bench-{run}-{n % users}"
        event = NotificationRequested(
            user_id=user_id, type="other", content=f"Bench notification {n}."
        )
        envelope = Envelope(
            type=event.event_type,
            source=SOURCE,
            correlation_id=f"bench-{run}",
            data=event.model_dump(mode="json"),
        )
        out.append((user_id.encode(), envelope.to_bytes()))
    return out


async def _produce(bootstrap: str, messages: list[tuple[bytes, bytes]]) -> list[RecordMetadata]:
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        linger_ms=LINGER_MS,
        max_batch_size=MAX_BATCH_BYTES,
        client_id="bench-consumer",
    )
    await producer.start()
    try:
        headers = [("event_type", NotificationRequested.event_type.encode())]
        futures = [
            await producer.send(NotificationRequested.topic, value, key=key, headers=headers)
            for key, value in messages
        ]
        return list(await asyncio.gather(*futures))
    finally:
        await producer.stop()


async def _committed(admin: AIOKafkaAdminClient, partitions: list[TopicPartition]) -> dict:
    answer = await admin.list_consumer_group_offsets(CONSUMER_GROUP, partitions=partitions)
    return {tp: (meta.offset if meta is not None else -1) for tp, meta in answer.items()}


def _done(
    committed: dict, first: dict[TopicPartition, int], last: dict[TopicPartition, int]
) -> int:
    """How many of the produced events lie below the committed offsets."""
    return sum(
        min(max(committed.get(tp, -1) - first[tp], 0), last[tp] + 1 - first[tp]) for tp in first
    )


async def _announced(bootstrap: str, run: str, deadline: float) -> Counter[str]:
    """notification.created events of this run, counted by notification id."""
    prefix = f"bench-{run}-".encode()
    created = await topic_data(
        bootstrap, NotificationCreated.topic, lambda key: key.startswith(prefix), deadline
    )
    return Counter(data["notification_id"] for data in created)


async def measure_consumer(
    bootstrap: str,
    *,
    events: int = EVENTS,
    users: int = USERS,
    timeout_seconds: float = TIMEOUT_SECONDS,
    verify: bool = True,
) -> dict[str, Any]:
    """Produce `events` notification requests and time the notification service storing them.

    Returns events/s (stored / total time), produce time, total time, how many were stored
    (committed) when the clock stopped, and with `verify` how many notification.created events
    of the run exist and whether each event was announced exactly once.
    """
    run = uuid.uuid4().hex[:8]
    messages = _requests(run, events, users)
    ids = {str(Envelope.model_validate_json(value).id) for _, value in messages}

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        started = time.monotonic()
        acks = await _produce(bootstrap, messages)
        produced = time.monotonic()
        first: dict[TopicPartition, int] = {}
        last: dict[TopicPartition, int] = {}
        for meta in acks:
            tp = TopicPartition(meta.topic, meta.partition)
            first[tp] = min(first.get(tp, meta.offset), meta.offset)
            last[tp] = max(last.get(tp, meta.offset), meta.offset)
        partitions = sorted(first)
        deadline = started + timeout_seconds
        stored = 0
        while time.monotonic() < deadline:
            stored = _done(await _committed(admin, partitions), first, last)
            if stored >= events:
                break
            await asyncio.sleep(POLL_SECONDS)
        finished = time.monotonic()
    finally:
        await admin.close()

    total = finished - started
    result: dict[str, Any] = {
        "measured": f"produce start -> group {CONSUMER_GROUP} committed past every event",
        "events": events,
        "users": users,
        "stored": stored,
        "complete": stored >= events,
        "produce_s": round(produced - started, 2),
        "produce_events_per_s": round(events / max(produced - started, 1e-9)),
        "total_s": round(total, 2),
        "events_per_s": round(stored / max(total, 1e-9)),
    }
    if verify:
        announced = await _announced(bootstrap, run, time.monotonic() + timeout_seconds)
        result["announced"] = len(announced.keys() & ids)
        result["announced_twice"] = sum(1 for n in announced.values() if n > 1)
        result["exactly_once"] = result["announced"] == events and not result["announced_twice"]
    return result


def _fleet_bootstrap(args: argparse.Namespace) -> str | None:
    if args.bootstrap:
        return str(args.bootstrap)
    if args.state_file:
        return str(json.loads(Path(args.state_file).read_text())["kafka"])
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", help="broker of a running fleet (host:port)")
    parser.add_argument("--state-file", help="state file of a running `python -m devstack`")
    parser.add_argument("--events", type=int, default=EVENTS)
    parser.add_argument("--users", type=int, default=USERS)
    parser.add_argument("--timeout", type=float, default=TIMEOUT_SECONDS)
    parser.add_argument("--no-verify", action="store_true", help="skip the read-back check")
    args = parser.parse_args()

    def measure(bootstrap: str) -> dict[str, Any]:
        return asyncio.run(
            measure_consumer(
                bootstrap,
                events=args.events,
                users=args.users,
                timeout_seconds=args.timeout,
                verify=not args.no_verify,
            )
        )

    bootstrap = _fleet_bootstrap(args)
    if bootstrap is not None:
        result = measure(bootstrap)
    else:
        from bench.run import start_fleet, stop
        from devstack.config import new_jwt_secret

        with tempfile.TemporaryDirectory(prefix="bench-consumer-") as tmp:
            fleet, state, _ready = start_fleet(Path(tmp), new_jwt_secret())
            try:
                result = measure(state["kafka"])
            finally:
                stop(fleet)
    print(json.dumps(result, indent=2))
    sys.exit(0 if result["complete"] else 1)


if __name__ == "__main__":
    main()
