"""The one topic registry: every topic of the fleet, its partitions and who consumes it (the
groups come from the service registry, shared/services.py).

The kafka admin service creates exactly these (and a `.dlq` for each consumed topic) before any
other service starts; nothing relies on the broker's auto-creation.
"""

from __future__ import annotations

from dataclasses import dataclass

DLQ_SUFFIX = ".dlq"
DEFAULT_PARTITIONS = 3
DLQ_PARTITIONS = 1


@dataclass(frozen=True, slots=True)
class Topic:
    """A topic: its name (`<domain>.<event>`) and partition count."""

    name: str
    partitions: int = DEFAULT_PARTITIONS

    @property
    def consumer_groups(self) -> tuple[str, ...]:
        """The groups that consume it (the services that read it in their group)."""
        # Imported here: the service registry names its topics through shared.events.models,
        # whose package imports this module.
        from shared.services import groups_consuming

        return groups_consuming(self.name)

    @property
    def dead_letter(self) -> str:
        """The name of this topic's dead-letter topic."""
        return dead_letter_topic(self.name)


def dead_letter_topic(name: str) -> str:
    """`<topic>.dlq`."""
    return f"{name}{DLQ_SUFFIX}"


TOPICS: tuple[Topic, ...] = (
    Topic("user.registered"),
    Topic("user.preferences-updated"),
    # Mails with a link: the notification service sends them.
    Topic("user.email-verification-requested"),
    Topic("user.password-reset-requested"),
    # Read by every gateway replica (no group): the revoked sessions it refuses.
    Topic("user.sessions-revoked"),
    # Read by every gateway replica, like the notification topics below.
    Topic("user.purchase-history-updated"),
    Topic("order.placed"),
    Topic("order.status-changed"),
    Topic("notification.requested"),
    # Read by every gateway replica (no group, no commits) to drop stale cache entries.
    Topic("notification.created"),
    Topic("notification.read"),
    Topic("purchase-history.requested"),
    Topic("purchase-history.provided"),
    # Facts for observers (the gateway may read them without a group to drop stale caches); the
    # notification comes through notification.requested.
    Topic("recommendation.generated"),
    Topic("promotion.published"),
)

_BY_NAME = {t.name: t for t in TOPICS}


def topic(name: str) -> Topic:
    """The registered topic of that name; an unregistered name is a programming error."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise KeyError(f"topic {name!r} is not in the registry (shared/events/topics.py)") from None


def all_topic_names() -> list[str]:
    """Every topic to create: the registry plus a dead-letter topic per consumed topic."""
    names = [t.name for t in TOPICS]
    names += [t.dead_letter for t in TOPICS if t.consumer_groups]
    return names


def partitions_of(name: str) -> int:
    """How many partitions the named topic (or dead-letter topic) has."""
    if name.endswith(DLQ_SUFFIX):
        return DLQ_PARTITIONS
    return topic(name).partitions


def consumer_groups() -> dict[str, list[str]]:
    """Each consumer group and the topics it reads, for lag monitoring."""
    groups: dict[str, list[str]] = {}
    for t in TOPICS:
        for group in t.consumer_groups:
            groups.setdefault(group, []).append(t.name)
    return groups
