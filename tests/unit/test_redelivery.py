"""The parked partitions' bookkeeping: exponential backoff up to a cap, give up at the horizon,
and the replay marker that keeps a dead letter to the group that failed it."""

from __future__ import annotations

from aiokafka import TopicPartition

from shared.redelivery import REPLAY_GROUP_HEADER, ParkedPartitions, replayed_for_another_group

TP = TopicPartition("order.placed", 1)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def parked(clock: Clock) -> ParkedPartitions:
    return ParkedPartitions(
        backoff_seconds=1, backoff_max_seconds=8, horizon_seconds=60, clock=clock
    )


def test_the_wait_doubles_up_to_its_cap() -> None:
    clock = Clock()
    partitions = parked(clock)
    waits = []
    for _ in range(6):
        verdict = partitions.failed(TP, 7)
        waits.append(verdict.retry_in)
    assert waits == [1, 2, 4, 8, 8, 8]
    assert partitions.waiting(TP) == 7


def test_a_partition_is_due_once_its_wait_has_passed() -> None:
    clock = Clock()
    partitions = parked(clock)
    partitions.failed(TP, 7)
    assert partitions.due() == []
    assert partitions.seconds_to_next() == 1
    clock.now += 1
    assert partitions.due() == [TP]
    assert partitions.waiting(TP) is None
    assert partitions.seconds_to_next() is None
    assert partitions.attempts(TP, 7)[0] == 1  # counted on until the record is done


def test_past_the_horizon_the_record_is_given_up() -> None:
    clock = Clock()
    partitions = parked(clock)
    first = partitions.failed(TP, 7)
    clock.now += 59
    assert not partitions.failed(TP, 7).give_up
    clock.now += 1
    verdict = partitions.failed(TP, 7)
    assert verdict.give_up
    assert verdict.attempts == 3
    assert verdict.first_failure == first.first_failure
    assert partitions.waiting(TP) is None


def test_success_or_a_new_record_starts_the_count_again() -> None:
    clock = Clock()
    partitions = parked(clock)
    partitions.failed(TP, 7)
    partitions.failed(TP, 7)
    partitions.done(TP, 7)
    assert partitions.attempts(TP, 7) == (0, None)
    partitions.failed(TP, 7)
    assert partitions.failed(TP, 8).attempts == 1


def test_a_revoked_partition_is_forgotten() -> None:
    partitions = parked(Clock())
    partitions.failed(TP, 7)
    partitions.forget([TP])
    assert partitions.waiting(TP) is None


def test_a_replayed_letter_is_for_its_group_only() -> None:
    headers = [("correlation_id", b"c"), (REPLAY_GROUP_HEADER, b"user_service")]
    assert not replayed_for_another_group(headers, "user_service")
    assert replayed_for_another_group(headers, "scheduler_service")
    assert replayed_for_another_group(headers, None)
    assert not replayed_for_another_group([("correlation_id", b"c")], "scheduler_service")
    assert not replayed_for_another_group(None, "scheduler_service")
