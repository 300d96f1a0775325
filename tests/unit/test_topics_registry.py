"""The topic registry: names, dead-letter topics, partitions, and that every event has a topic."""

from __future__ import annotations

import re

import pytest

from shared.events.models import EVENT_TYPES
from shared.events.topics import (
    DLQ_SUFFIX,
    TOPICS,
    all_topic_names,
    consumer_groups,
    dead_letter_topic,
    partitions_of,
    topic,
)

_KEBAB = r"[a-z][a-z0-9]*(?:-[a-z0-9]+)*"
TOPIC_NAME = re.compile(rf"^{_KEBAB}\.{_KEBAB}$")


@pytest.mark.parametrize("name", [t.name for t in TOPICS])
def test_topic_names_are_kebab_case_domain_dot_event(name: str) -> None:
    assert TOPIC_NAME.fullmatch(name), name


@pytest.mark.parametrize(
    "bad", ["user.Registered", "user_registered", "user.registered.x", "order.status_changed"]
)
def test_the_name_rule_rejects_other_shapes(bad: str) -> None:
    assert not TOPIC_NAME.fullmatch(bad)


def test_topic_names_are_unique() -> None:
    names = all_topic_names()
    assert len(names) == len(set(names))


def test_every_consumed_topic_has_a_dead_letter_topic() -> None:
    names = set(all_topic_names())
    consumed = [t for t in TOPICS if t.consumer_groups]
    assert consumed
    for registered in consumed:
        assert registered.dead_letter == f"{registered.name}{DLQ_SUFFIX}"
        assert registered.dead_letter in names


def test_only_consumed_topics_get_a_dead_letter_topic() -> None:
    names = set(all_topic_names())
    for registered in TOPICS:
        if not registered.consumer_groups:
            assert dead_letter_topic(registered.name) not in names


@pytest.mark.parametrize("event_type", sorted(EVENT_TYPES))
def test_every_event_model_publishes_to_a_registered_topic(event_type: str) -> None:
    model = EVENT_TYPES[event_type]
    assert model.event_type == event_type
    assert topic(model.topic).name == model.topic


def test_an_unregistered_topic_is_refused() -> None:
    with pytest.raises(KeyError, match="not in the registry"):
        topic("user.vanished")


@pytest.mark.parametrize("name", all_topic_names())
def test_every_topic_has_partitions(name: str) -> None:
    assert partitions_of(name) > 0


def test_consumer_groups_read_only_registered_topics() -> None:
    groups = consumer_groups()
    assert groups
    registered = {t.name for t in TOPICS}
    for group, topics in groups.items():
        assert group
        assert set(topics) <= registered
