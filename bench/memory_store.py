"""Cost per operation of the in-process MongoDB stand-in (`MONGO_URI=memory://`) at a given size.

    flock /tmp/bench.lock .venv/bin/python -m bench.memory_store            # both stores
    flock /tmp/bench.lock .venv/bin/python -m bench.memory_store --store plain --docs 5000

For each size N: N notification-like documents are loaded (insert_many; one in 100 with a
pending outbox event), a unique index on `event_id`, an index on `user_id` and a sparse one on
`outbox.0` are declared, then each operation is timed at that size through mongomock-motor's
async API, as the services call it: insert_one (unique index checked), find_one by _id, find by
the indexed `user_id` (N/500 documents each), update_one by _id, and the outbox relay's pass
(`{"outbox.0": {"$exists": true}}`, limit 100). Each operation runs up to 1,000 times or for
about 2 s, whichever comes first; the mean is printed in microseconds. `plain` is mongomock as
released, `indexed` is devstack.memory_store.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from mongomock import MongoClient
from mongomock_motor import AsyncMongoMockClient

USERS = 500
MAX_OPS = 1000
BUDGET_SECONDS = 2.0


def _client(store: str) -> Any:
    if store == "indexed":
        from devstack.memory_store import IndexedMongoClient

        return AsyncMongoMockClient(mock_mongo_client=IndexedMongoClient(tz_aware=True))
    return AsyncMongoMockClient(mock_mongo_client=MongoClient(tz_aware=True))


def _notification(i: int) -> dict[str, Any]:
    return {
        "_id": f"n-{i}",
        "event_id": f"evt-{i}",
        "user_id": f"user-{i % USERS}",
        "read": False,
        "delivery": {"status": "pending", "attempts": 0},
        "outbox": [{"id": f"evt-{i}", "topic": "notification.created"}] if i % 100 == 0 else [],
    }


async def _per_op_us(op: Callable[[int], Awaitable[Any]]) -> tuple[float, int]:
    done = 0
    start = time.perf_counter()
    while done < MAX_OPS and time.perf_counter() - start < BUDGET_SECONDS:
        await op(done)
        done += 1
    return (time.perf_counter() - start) / done * 1e6, done


async def measure(store: str, size: int) -> dict[str, tuple[float, int]]:
    """Mean microseconds per operation (and how many ran) at `size` documents."""
    collection = _client(store)["bench"]["notifications"]
    await collection.insert_many([_notification(i) for i in range(size)])
    await collection.create_index("event_id", unique=True)
    await collection.create_index([("user_id", 1), ("sent_at", -1)])
    await collection.create_index([("outbox.0", 1)], sparse=True)
    fresh = iter(range(size, size + 10 * MAX_OPS))

    async def insert(_: int) -> None:
        await collection.insert_one(_notification(next(fresh)))

    async def by_id(i: int) -> None:
        assert await collection.find_one({"_id": f"n-{i * 7 % size}"}) is not None

    async def by_user(i: int) -> None:
        assert await collection.find({"user_id": f"user-{i % USERS}"}).to_list(None)

    async def update(i: int) -> None:
        result = await collection.update_one({"_id": f"n-{i * 7 % size}"}, {"$set": {"read": 1}})
        assert result.matched_count == 1

    async def relay_pass(_: int) -> None:
        pending = collection.find({"outbox.0": {"$exists": True}}, {"outbox": 1}).limit(100)
        assert await pending.to_list(None)

    return {
        "outbox relay pass": await _per_op_us(relay_pass),
        "insert_one (unique index)": await _per_op_us(insert),
        "find_one by _id": await _per_op_us(by_id),
        "find by indexed user_id": await _per_op_us(by_user),
        "update_one by _id": await _per_op_us(update),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", choices=["plain", "indexed", "both"], default="both")
    parser.add_argument("--docs", type=int, nargs="+", default=[5000, 50000])
    args = parser.parse_args()
    stores = ["plain", "indexed"] if args.store == "both" else [args.store]
    print(f"{'store':8} {'docs':>7}  {'operation':28} {'us/op':>10} {'ops':>5}")
    for size in args.docs:
        for store in stores:
            for name, (micros, ops) in asyncio.run(measure(store, size)).items():
                print(f"{store:8} {size:>7}  {name:28} {micros:>10,.1f} {ops:>5}")


if __name__ == "__main__":
    main()
