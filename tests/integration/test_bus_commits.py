"""When a consumer commits, against the real broker: handled offsets are pooled while records
keep coming (one request, at most once per KAFKA_COMMIT_INTERVAL_MS), committed at once when a
fetch comes back empty, and committed as far as handled when the group takes its partitions
away; never past what was handled.

A new group reads the topic from its beginning, so its fetches also hold the records earlier
tests left there: the assertions count fetches and commits, and follow this test's own events
by id."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from typing import Any

from shared.bus import Received, batched
from shared.publisher import EventPublisher
from tests.fixtures.bus import (  # noqa: F401
    bus_publisher,
    commit_requests,
    mine,
    publish_all,
    started_batch_consumer,
    started_consumer,
)
from tests.fixtures.parts import eventually

# Far longer than any test: only the other moments (caught up, revoked, stop) commit.
NEVER_DUE_MS = 600_000
PER_FETCH = 2


async def test_offsets_handled_fetch_after_fetch_are_committed_in_one_request(
    kafka_broker: str, publisher: EventPublisher, commits: list[dict[Any, int]]
) -> None:
    user, group = f"user-{uuid.uuid4().hex}", f"group-{uuid.uuid4().hex}"
    fetches: list[int] = []
    seen: list[str] = []

    async def handle(received: Sequence[Received]) -> None:
        fetches.append(len(received))
        seen.extend(mine(user, received))

    sent = await publish_all(publisher, user, 20)  # there before the group: fetched at once
    consumer = await started_consumer(
        kafka_broker,
        publisher,
        batched(handle, max_records=PER_FETCH),  # each getmany hands over 2 of those buffered
        group,
        kafka_commit_interval_ms=NEVER_DUE_MS,
    )
    try:
        await eventually(lambda: seen == sent, what="all events")
        await eventually(lambda: commits, what="the caught-up commit")
    finally:
        await consumer.stop()
    assert len(fetches) >= len(sent) // PER_FETCH
    # The first fetch (nothing was due yet), the caught-up one, and at stop what came between
    # the last two: one commit per fetch would be ten or more.
    assert 1 <= len(commits) <= 3 < len(fetches), (len(commits), len(fetches))


async def test_a_caught_up_consumer_commits_at_once_and_a_restart_gets_only_news(
    kafka_broker: str, publisher: EventPublisher, commits: list[dict[Any, int]]
) -> None:
    user, group = f"user-{uuid.uuid4().hex}", f"group-{uuid.uuid4().hex}"
    seen: list[str] = []
    commits_when_handled: list[int] = []

    async def handle(received: Sequence[Received]) -> None:
        seen.extend(mine(user, received))
        commits_when_handled.append(len(commits))

    consumer = await started_batch_consumer(
        kafka_broker, publisher, handle, group, kafka_commit_interval_ms=NEVER_DUE_MS
    )
    try:
        # Whatever the topic held before is read (and committed) by the time this comes.
        probe = await publish_all(publisher, user, 1)
        await eventually(lambda: seen == probe, what="the probe")
        sent = probe + await publish_all(publisher, user, 3)
        await eventually(lambda: seen == sent, what="the events")
        # Long before the interval: only the empty fetch after them can commit them.
        handled_at = commits_when_handled[-1]
        await eventually(lambda: len(commits) > handled_at, what="the caught-up commit")
        before_stop = len(commits)
    finally:
        await consumer.stop()
    assert len(commits) == before_stop, "the stop found something uncommitted"

    late = await publish_all(publisher, user, 1)
    again: list[str] = []

    async def handle_again(received: Sequence[Received]) -> None:
        again.extend(mine(user, received))

    consumer = await started_batch_consumer(kafka_broker, publisher, handle_again, group)
    try:
        await eventually(lambda: again == late, what="the late event")
    finally:
        await consumer.stop()
    assert again == late


async def test_a_revoked_partition_is_committed_as_far_as_handled_while_a_fetch_is_in_hand(
    kafka_broker: str, publisher: EventPublisher, commits: list[dict[Any, int]]
) -> None:
    """A second member joins while the first is inside a handler: the rebalance takes every
    partition from the first, which commits what it had handled, not what is in hand. So
    whoever reads the partition next starts at the fetch that was in hand."""
    user, group = f"user-{uuid.uuid4().hex}", f"group-{uuid.uuid4().hex}"
    sent = await publish_all(publisher, user, 4 * PER_FETCH)
    in_hand: list[str] = []
    gate = asyncio.Event()
    after_join: list[str] = []
    joined = False

    async def first_handler(received: Sequence[Received]) -> None:
        ids = mine(user, received)
        if joined:
            after_join.extend(ids)
        elif sent[PER_FETCH * 2] in ids:  # a fetch after two of ours: held in hand
            in_hand.extend(ids)
            await gate.wait()

    async def second_handler(received: Sequence[Received]) -> None:
        after_join.extend(mine(user, received))

    first = await started_consumer(
        kafka_broker,
        publisher,
        batched(first_handler, max_records=PER_FETCH),
        group,
        kafka_commit_interval_ms=NEVER_DUE_MS,
    )
    second = None
    try:
        await eventually(lambda: in_hand, what="a fetch in hand")
        revoked_at = len(commits)
        second = await started_batch_consumer(kafka_broker, publisher, second_handler, group)
        assert len(commits) > revoked_at, "nothing was committed when the partitions moved"
        joined = True
        gate.set()
        rest = sent[sent.index(in_hand[0]) :]
        await eventually(lambda: set(rest) <= set(after_join), what="the rest, read again")
    finally:
        gate.set()
        await first.stop()
        if second is not None:
            await second.stop()
    # What was handled before the rebalance never came again; what was in hand did.
    assert sorted(set(after_join)) == sorted(rest)
