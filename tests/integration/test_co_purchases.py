"""The co-purchase table (recommendation_service/repository.py) on the in-process store: one
bulk write per order, a bounded top list per product, a redelivered order counted once, and
concurrent orders of the same products both counted."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

from recommendation_service.repository import (
    CoPurchaseLimits,
    CoPurchasesContended,
    RecommendationRepository,
)
from shared.mongo import MongoStore
from tests.fixtures.parts import TEST_MONGO_URI

pytestmark = pytest.mark.integration

LIMITS = CoPurchaseLimits(top_size=3, recent_orders=4, write_attempts=5)
BARRIER_TIMEOUT_SECONDS = 10


@pytest.fixture
async def repository() -> RecommendationRepository:
    store = MongoStore(TEST_MONGO_URI, f"test_{uuid.uuid4().hex}")
    repo = RecommendationRepository(store.db)
    await repo.ensure_indexes()
    return repo


class Spy:
    """Counts the writes the co-purchase collection gets."""

    def __init__(self, collection: Any, monkeypatch: pytest.MonkeyPatch) -> None:
        self.bulk: list[int] = []
        self.single = 0
        bulk_write, update_one = collection.bulk_write, collection.update_one

        async def spied_bulk(requests: list[Any], **options: Any) -> Any:
            self.bulk.append(len(requests))
            return await bulk_write(requests, **options)

        async def spied_update(*args: Any, **options: Any) -> Any:
            self.single += 1
            return await update_one(*args, **options)

        monkeypatch.setattr(collection, "bulk_write", spied_bulk)
        monkeypatch.setattr(collection, "update_one", spied_update)


async def test_a_fifty_product_order_is_one_bulk_write(
    repository: RecommendationRepository, monkeypatch: pytest.MonkeyPatch
) -> None:
    spy = Spy(repository.co_purchases, monkeypatch)
    products = [str(n) for n in range(1, 51)]
    assert await repository.record_order("o1", products, LIMITS) == 50
    # One write of the 50 products' documents (was ~2,450 sequential round trips).
    assert (spy.bulk, spy.single) == ([50], 0)
    doc = await repository.co_purchases.find_one({"_id": "7"})
    assert doc is not None and len(doc["top"]) == LIMITS.top_size


async def test_top_lists_are_bounded_and_keep_the_most_bought_together(
    repository: RecommendationRepository,
) -> None:
    await repository.record_order("o1", ["1", "2", "3"], LIMITS)
    await repository.record_order("o2", ["1", "2"], LIMITS)
    await repository.record_order("o3", ["1", "4", "5", "6"], LIMITS)
    doc = await repository.co_purchases.find_one({"_id": "1"})
    assert doc is not None
    assert doc["top"] == [
        {"id": "2", "count": 2},
        {"id": "3", "count": 1},
        {"id": "4", "count": 1},
    ]
    counts = await repository.co_counts(["1", "2"])
    assert counts[("1", "2")] == 2 and counts[("1", "3")] == 1
    assert ("1", "6") not in counts  # fell off 1's list, and 6 is not asked about


async def test_a_redelivered_order_counts_once_within_the_recent_window(
    repository: RecommendationRepository,
) -> None:
    assert await repository.record_order("o1", ["1", "2"], LIMITS) == 2
    assert await repository.record_order("o1", ["2", "1"], LIMITS) == 0
    assert (await repository.co_counts(["1"]))[("1", "2")] == 1
    for n in range(LIMITS.recent_orders):
        await repository.record_order(f"later-{n}", ["1", "2"], LIMITS)
    doc = await repository.co_purchases.find_one({"_id": "1"})
    assert doc is not None and len(doc["orders"]) == LIMITS.recent_orders  # bounded


async def test_concurrent_orders_of_the_same_products_are_both_counted(
    repository: RecommendationRepository, monkeypatch: pytest.MonkeyPatch
) -> None:
    await repository.record_order("o0", ["1", "2"], LIMITS)
    # Both read the documents before either writes: the version check makes one retry.
    both_read = asyncio.Barrier(2)
    find = repository.co_purchases.find
    reads = 0

    def find_then_wait(*args: Any, **kwargs: Any) -> Any:
        nonlocal reads
        reads += 1
        cursor = find(*args, **kwargs)
        if reads > 2:
            return cursor
        to_list = cursor.to_list

        async def wait_list(length: Any) -> Any:
            found = await to_list(length)
            async with asyncio.timeout(BARRIER_TIMEOUT_SECONDS):
                await both_read.wait()
            return found

        cursor.to_list = wait_list
        return cursor

    monkeypatch.setattr(repository.co_purchases, "find", find_then_wait)
    counted = await asyncio.gather(
        repository.record_order("o1", ["1", "2"], LIMITS),
        repository.record_order("o2", ["1", "2"], LIMITS),
    )
    monkeypatch.undo()
    assert counted == [2, 2]
    assert (await repository.co_counts(["1"]))[("1", "2")] == 3


async def test_a_write_that_keeps_losing_is_left_to_the_bus(
    repository: RecommendationRepository, monkeypatch: pytest.MonkeyPatch
) -> None:
    await repository.record_order("o0", ["1", "2"], LIMITS)
    update = repository.co_purchases.update_one

    bulk_write = repository.co_purchases.bulk_write

    async def someone_else_first(requests: list[Any], **options: Any) -> Any:
        await update({"_id": "1"}, {"$inc": {"version": 1}})
        return await bulk_write(requests, **options)

    monkeypatch.setattr(repository.co_purchases, "bulk_write", someone_else_first)
    with pytest.raises(CoPurchasesContended):
        await repository.record_order("o1", ["1", "2"], LIMITS)
