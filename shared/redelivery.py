"""Waiting out an outage without losing order: the partitions a consumer has parked.

When a handler fails for a reason that is not the message's fault (shared.failures), the
consumer does not move on: it seeks the partition back to the failed record, pauses it, and
fetches it again once its backoff has passed (the first wait `kafka_retry_backoff_seconds`,
doubling up to `kafka_retry_backoff_max_seconds`). Nothing behind that record on the partition
is handled meanwhile, so a later event of the same key (same key, same partition) never
overtakes it; the other partitions go on, and the consumer keeps polling, so it stays in its
group however long the wait. Only when a record has kept failing for
`kafka_retry_horizon_seconds` is it dead-lettered and the partition moves on.

Why not delay topics (`<topic>.retry.<n>`): a message moved to a retry topic lets the next
message of the same key, still on the original partition, be handled first, unless every later
message of that key is routed behind it (a parked-key table consulted for each message, shared
by the group's members, and cleared in order): more moving parts and more topics for what
holding the partition gives for free. The price of holding it is that the other keys of that
partition wait too, which an outage of a dependency they share makes them do anyway.

Nothing about the wait is stored: a consumer that stops or loses the partition has committed
nothing past the failed record, so whoever reads the partition next starts there again.

This module also says which consumer group a replayed dead letter is for: the replay marks it
with `dlq_replay_group`, and every other group skips it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiokafka import TopicPartition

REPLAY_GROUP_HEADER = "dlq_replay_group"


def replayed_for_another_group(
    headers: Iterable[tuple[str, bytes]] | None, group: str | None
) -> bool:
    """Whether a record is a dead letter replayed for a consumer group other than `group`."""
    for name, value in headers or ():
        if name == REPLAY_GROUP_HEADER and value:
            return bytes(value).decode() != (group or "")
    return False


@dataclass(slots=True)
class Parked:
    """A partition waiting to retry the record at `offset`."""

    offset: int
    attempts: int
    first_failure: datetime
    first_failure_at: float  # monotonic
    due: float  # monotonic
    waiting: bool = True


@dataclass(frozen=True, slots=True)
class Verdict:
    """What a failed attempt comes to: wait `retry_in` seconds, or give up (horizon passed)."""

    attempts: int
    first_failure: datetime
    retry_in: float | None

    @property
    def give_up(self) -> bool:
        """The horizon has passed: dead-letter the record."""
        return self.retry_in is None


class ParkedPartitions:
    """The partitions of one consumer that wait to retry a record, with their backoff."""

    def __init__(
        self,
        *,
        backoff_seconds: float,
        backoff_max_seconds: float,
        horizon_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._backoff = backoff_seconds
        self._backoff_max = backoff_max_seconds
        self._horizon = horizon_seconds
        self._clock = clock
        self._parked: dict[TopicPartition, Parked] = {}

    def delay(self, attempts: int) -> float:
        """The wait after the `attempts`-th failed attempt (exponential, capped)."""
        return float(min(self._backoff * 2 ** (attempts - 1), self._backoff_max))

    def failed(self, tp: TopicPartition, offset: int) -> Verdict:
        """Count a failed attempt at `offset` and park the partition, unless the record has
        been failing for longer than the horizon."""
        now = self._clock()
        parked = self._parked.get(tp)
        if parked is None or parked.offset != offset:
            parked = Parked(offset, 0, datetime.now(UTC), now, now)
        parked.attempts += 1
        if now - parked.first_failure_at >= self._horizon:
            self._parked.pop(tp, None)
            return Verdict(parked.attempts, parked.first_failure, None)
        retry_in = self.delay(parked.attempts)
        parked.due = now + retry_in
        parked.waiting = True
        self._parked[tp] = parked
        return Verdict(parked.attempts, parked.first_failure, retry_in)

    def attempts(self, tp: TopicPartition, offset: int) -> tuple[int, datetime | None]:
        """Failed attempts so far at `offset`, and when the first was."""
        parked = self._parked.get(tp)
        if parked is None or parked.offset != offset:
            return 0, None
        return parked.attempts, parked.first_failure

    def done(self, tp: TopicPartition, offset: int) -> None:
        """The record at `offset` is handled (or dead-lettered): its partition is free."""
        parked = self._parked.get(tp)
        if parked is not None and parked.offset <= offset:
            del self._parked[tp]

    def waiting(self, tp: TopicPartition) -> int | None:
        """The offset the partition waits to retry while its backoff runs, else None."""
        parked = self._parked.get(tp)
        return parked.offset if parked is not None and parked.waiting else None

    def due(self) -> list[TopicPartition]:
        """Partitions whose backoff has passed (to resume); they stop waiting."""
        now = self._clock()
        ready = [tp for tp, p in self._parked.items() if p.waiting and p.due <= now]
        for tp in ready:
            self._parked[tp].waiting = False
        return ready

    def seconds_to_next(self) -> float | None:
        """How long until the next waiting partition is due; None when none waits."""
        dues = [p.due for p in self._parked.values() if p.waiting]
        if not dues:
            return None
        return max(0.0, min(dues) - self._clock())

    def forget(self, tps: Iterable[Any]) -> None:
        """Drop partitions this consumer no longer reads (its next reader starts over)."""
        for tp in tps:
            self._parked.pop(tp, None)
