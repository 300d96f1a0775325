"""The one topic registry: every topic of the fleet, its partitions and who consumes it.

The kafka admin service creates exactly these (and a `.dlq` for each consumed topic) before any
other service starts; nothing relies on the broker's auto-creation.
"""

from __future__ import annotations

from dataclasses import dataclass, field

DLQ_SUFFIX = ".dlq"
DEFAULT_PARTITIONS = 3
DLQ_PARTITIONS = 1


@dataclass(frozen=True, slots=True)
class Topic:
    """A topic: its name (`<domain>.<event>`), partition count and consuming groups."""

    name: str
    partitions: int = DEFAULT_PARTITIONS
    consumer_groups: tuple[str, ...] = field(default=())

    @property
    def dead_letter(self) -> str:
        """The name of this topic's dead-letter topic."""
        return dead_letter_topic(self.name)


def dead_letter_topic(name: str) -> str:
    """`<topic>.dlq`."""
    return f"{name}{DLQ_SUFFIX}"


TOPICS: tuple[Topic, ...] = (
    Topic("user.registered", consumer_groups=("notification_service", "scheduler_service")),
    Topic("user.preferences-updated", consumer_groups=("scheduler_service",)),
    # Mails with a link: the notification service sends them.
    Topic("user.email-verification-requested", consumer_groups=("notification_service",)),
    Topic("user.password-reset-requested", consumer_groups=("notification_service",)),
    # Read by every gateway replica (no group): the revoked sessions it refuses.
    Topic("user.sessions-revoked"),
    # Read by every gateway replica, like the notification topics below.
    Topic("user.purchase-history-updated"),
    Topic(
        "order.placed",
        consumer_groups=("user_service", "recommendation_service", "scheduler_service"),
    ),
    Topic("order.status-changed", consumer_groups=("user_service",)),
    Topic("notification.requested", consumer_groups=("notification_service",)),
    # Read by every gateway replica (no group, no commits) to drop stale cache entries.
    Topic("notification.created"),
    Topic("notification.read"),
    Topic("purchase-history.requested", consumer_groups=("user_service",)),
    Topic("purchase-history.provided", consumer_groups=("recommendation_service",)),
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
