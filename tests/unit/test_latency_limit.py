"""The adaptive limit on requests in progress (shared/latency_limit.py), on a fake clock: it
shrinks in proportion while answers are slower than the target, by one decision a window, never
on answers of requests taken in under an older limit, and grows back by one a window while
answers are in time and the limit is in use."""

from __future__ import annotations

import pytest

from shared.latency_limit import MIN_WINDOW_SAMPLES, LatencyLimit
from tests.fixtures.logs import FakeClock

TARGET = 0.5
CEILING = 64
FLOOR = 8


def limit_on(clock: FakeClock) -> LatencyLimit:
    return LatencyLimit(ceiling=CEILING, floor=FLOOR, target_seconds=TARGET, clock=clock)


def one_window(
    limit: LatencyLimit,
    clock: FakeClock,
    seconds: float,
    *,
    in_flight: int = CEILING,
    epoch: int | None = None,
) -> None:
    """A window's worth of answers that each took `seconds`, the window's time passed."""
    taken_in_under = limit.epoch if epoch is None else epoch
    for _ in range(MIN_WINDOW_SAMPLES - 1):
        limit.observe(seconds, taken_in_under, in_flight)
    clock.now += TARGET
    limit.observe(seconds, taken_in_under, in_flight)


def test_it_starts_at_the_ceiling_and_admits_below_it() -> None:
    limit = limit_on(FakeClock())
    assert limit.admits(CEILING - 1)
    assert not limit.admits(CEILING)


def test_answers_twice_the_target_halve_it() -> None:
    clock = FakeClock()
    limit = limit_on(clock)
    one_window(limit, clock, 2 * TARGET)
    assert int(limit.limit) == CEILING // 2
    assert limit.admits(CEILING // 2 - 1)
    assert not limit.admits(CEILING // 2)


def test_far_slower_answers_halve_it_at_most_and_slightly_slower_ones_take_a_tenth() -> None:
    clock = FakeClock()
    limit = limit_on(clock)
    one_window(limit, clock, 10 * TARGET)
    assert limit.limit == CEILING / 2
    one_window(limit, clock, 1.05 * TARGET)
    assert limit.limit == pytest.approx(CEILING / 2 * 0.9)


def test_answers_of_requests_taken_in_under_the_old_limit_do_not_shrink_it_again() -> None:
    clock = FakeClock()
    limit = limit_on(clock)
    before = limit.epoch
    one_window(limit, clock, 2 * TARGET)
    shrunk = limit.limit
    for _ in range(3):
        one_window(limit, clock, 4 * TARGET, epoch=before)
    assert limit.limit == shrunk
    one_window(limit, clock, 4 * TARGET)
    assert limit.limit == shrunk / 2


def test_it_never_goes_below_the_floor() -> None:
    clock = FakeClock()
    limit = limit_on(clock)
    for _ in range(20):
        one_window(limit, clock, 10 * TARGET)
    assert limit.limit == FLOOR
    assert limit.admits(FLOOR - 1)
    assert not limit.admits(FLOOR)


def test_answers_in_time_grow_it_by_one_a_window_while_it_is_in_use_up_to_the_ceiling() -> None:
    clock = FakeClock()
    limit = limit_on(clock)
    one_window(limit, clock, 2 * TARGET)
    assert limit.limit == CEILING / 2
    one_window(limit, clock, TARGET / 2, in_flight=CEILING // 2)
    assert limit.limit == CEILING / 2 + 1
    # Hardly in use: answers in time say nothing about more requests at once.
    one_window(limit, clock, TARGET / 2, in_flight=3)
    assert limit.limit == CEILING / 2 + 1
    for _ in range(CEILING):
        one_window(limit, clock, TARGET / 2, in_flight=CEILING)
    assert limit.limit == CEILING


def test_a_window_needs_both_its_time_and_enough_answers() -> None:
    clock = FakeClock()
    limit = limit_on(clock)
    clock.now += 10 * TARGET
    for _ in range(MIN_WINDOW_SAMPLES - 1):
        limit.observe(10 * TARGET, limit.epoch, CEILING)
    assert limit.limit == CEILING  # time enough, too few answers
    limit.observe(10 * TARGET, limit.epoch, CEILING)
    assert limit.limit == CEILING / 2
    for _ in range(5 * MIN_WINDOW_SAMPLES):
        limit.observe(10 * TARGET, limit.epoch, CEILING)
    assert limit.limit == CEILING / 2  # answers enough, no time passed
    clock.now += TARGET
    limit.observe(10 * TARGET, limit.epoch, CEILING)
    assert limit.limit == CEILING / 4


@pytest.mark.parametrize(
    ("floor", "ceiling", "target"), [(0, 4, TARGET), (5, 4, TARGET), (1, 4, 0.0)]
)
def test_impossible_bounds_are_refused(floor: int, ceiling: int, target: float) -> None:
    with pytest.raises(ValueError, match=r"floor|target"):
        LatencyLimit(ceiling=ceiling, floor=floor, target_seconds=target)
