"""The kafka admin service's pure parts: lag arithmetic, dead-letter names, replay headers."""

from __future__ import annotations

from aiokafka import ConsumerRecord

from kafka_admin_service.monitor import dead_letter_topics, lag_of, original_topic_of
from kafka_admin_service.replay import replay_group, replay_headers, replay_target
from shared.events.topics import TOPICS


def test_lag_is_end_minus_committed_and_never_negative() -> None:
    assert lag_of(3, 0, 10) == 7
    assert lag_of(10, 0, 10) == 0
    # The embedded broker can understate the end offset: clamp, never negative.
    assert lag_of(12, 0, 10) == 0
    # No commit yet: the group would start at the oldest offset still held.
    assert lag_of(None, 4, 10) == 6


def test_every_consumed_topic_has_its_dead_letter_topic() -> None:
    assert set(dead_letter_topics()) == {f"{t.name}.dlq" for t in TOPICS if t.consumer_groups}
    assert original_topic_of("order.placed.dlq") == "order.placed"
    assert replay_group("order.placed.dlq") == "kafka_admin_service-replay-order.placed.dlq"


def record(headers: list[tuple[str, bytes]]) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord(
        topic="order.placed.dlq",
        partition=0,
        offset=5,
        timestamp=0,
        timestamp_type=0,
        key=b"k",
        value=b"v",
        checksum=None,
        serialized_key_size=1,
        serialized_value_size=1,
        headers=headers,
    )


def test_a_replayed_letter_goes_home_without_its_dead_letter_headers() -> None:
    letter = record(
        [
            ("correlation_id", b"c1"),
            ("dlq_original_topic", b"order.placed"),
            ("dlq_error", b"RuntimeError: boom"),
        ]
    )
    assert replay_target(letter, "order.placed.dlq") == "order.placed"
    assert replay_headers(letter, "order.placed.dlq") == [
        ("correlation_id", b"c1"),
        ("dlq_replayed_from", b"order.placed.dlq:5"),
    ]
    # A letter names the group that failed it: its replay is for that group alone.
    failed_by = record([("dlq_consumer_group", b"user_service"), ("dlq_error", b"boom")])
    assert replay_headers(failed_by, "order.placed.dlq") == [
        ("dlq_replayed_from", b"order.placed.dlq:5"),
        ("dlq_replay_group", b"user_service"),
    ]
    # A letter without the header goes back to the topic its .dlq belongs to.
    assert replay_target(record([]), "order.placed.dlq") == "order.placed"
