"""The one registry of the fleet's services: each one's package, default port, consumer group and
the topics it publishes, consumes in its group and reads on every replica.

Everything that lists services or ports reads it: each service's settings and consumer group,
the topic registry's consumers (shared/events/topics.py), the local stack and its compose check
(devstack), the API documents (devstack/apidocs.py, devstack/asyncapi.py), the `fleet` CLI and
the Makefile (`python -m shared.services` prints the packages). tests/unit/test_services.py
checks it against the code, the AsyncAPI documents and docker-compose.yml.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

from shared.events import models as events

DEFAULT_HOST = "127.0.0.1"


@dataclass(frozen=True, slots=True)
class Service:
    """A service: its package (`python -m <name>`, also its name in compose and the docs), its
    default port (docs/contract.md section 2) and the topics it publishes and reads."""

    name: str
    port: int
    publishes: tuple[str, ...] = ()
    # Read in the service's consumer group: each message once per group, committed, dead-lettered.
    consumes: tuple[str, ...] = ()
    # Read by every replica without a group (cache invalidation, subscriptions): no commits.
    broadcasts_read: tuple[str, ...] = ()

    @property
    def package(self) -> str:
        """The Python package the service runs as."""
        return self.name

    @property
    def consumer_group(self) -> str | None:
        """The Kafka consumer group of its replicas, when it consumes any topic in a group."""
        return self.name if self.consumes else None

    @property
    def default_url(self) -> str:
        """Where it listens on this machine by default (what the gateway calls unless told)."""
        return f"http://{DEFAULT_HOST}:{self.port}"

    @property
    def url_env(self) -> str:
        """The variable that tells other services (the gateway) where this one listens."""
        return f"{self.name.upper()}_URL"


KAFKA_ADMIN = Service("kafka_admin_service", 3000)
USER = Service(
    "user_service",
    5000,
    publishes=(
        events.UserRegistered.topic,
        events.EmailVerificationRequested.topic,
        events.PasswordResetRequested.topic,
        events.SessionsRevoked.topic,
        events.UserPreferencesUpdated.topic,
        events.UserPurchaseHistoryUpdated.topic,
        events.PurchaseHistoryProvided.topic,
        events.NotificationRequested.topic,
    ),
    consumes=(
        events.OrderPlaced.topic,
        events.OrderStatusChanged.topic,
        events.PurchaseHistoryRequested.topic,
    ),
)
NOTIFICATION = Service(
    "notification_service",
    6000,
    publishes=(events.NotificationCreated.topic, events.NotificationRead.topic),
    consumes=(
        events.UserRegistered.topic,
        events.EmailVerificationRequested.topic,
        events.PasswordResetRequested.topic,
        events.NotificationRequested.topic,
    ),
)
ORDER = Service(
    "order_service",
    7000,
    publishes=(events.OrderPlaced.topic, events.OrderStatusChanged.topic),
)
RECOMMENDATION = Service(
    "recommendation_service",
    8000,
    publishes=(
        events.NotificationRequested.topic,
        events.PurchaseHistoryRequested.topic,
        events.RecommendationGenerated.topic,
    ),
    consumes=(events.OrderPlaced.topic, events.PurchaseHistoryProvided.topic),
)
SCHEDULER = Service(
    "scheduler_service",
    9000,
    publishes=(events.NotificationRequested.topic, events.PromotionPublished.topic),
    consumes=(
        events.UserRegistered.topic,
        events.UserPreferencesUpdated.topic,
        events.OrderPlaced.topic,
    ),
)
GATEWAY = Service(
    "graphql_gateway",
    4000,
    broadcasts_read=(
        events.SessionsRevoked.topic,
        events.NotificationCreated.topic,
        events.NotificationRead.topic,
        events.UserPreferencesUpdated.topic,
        events.UserPurchaseHistoryUpdated.topic,
        events.OrderStatusChanged.topic,
    ),
)

# In the local stack's start order: the admin service first (it creates every topic), the
# gateway last.
SERVICES: tuple[Service, ...] = (
    KAFKA_ADMIN,
    USER,
    NOTIFICATION,
    ORDER,
    RECOMMENDATION,
    SCHEDULER,
    GATEWAY,
)

_BY_NAME = {service.name: service for service in SERVICES}


def service_named(name: str) -> Service:
    """The registered service of that name; an unknown name is a programming error."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise KeyError(f"{name!r} is not a service of the fleet (shared/services.py)") from None


def groups_consuming(topic: str) -> tuple[str, ...]:
    """The consumer groups that read the topic, in start order."""
    return tuple(s.name for s in SERVICES if topic in s.consumes)


def publishers_of(topic: str) -> tuple[str, ...]:
    """The services that publish to the topic, in start order."""
    return tuple(s.name for s in SERVICES if topic in s.publishes)


def main() -> int:
    """Print the packages, one a line (the Makefile's SERVICES)."""
    print("\n".join(service.package for service in SERVICES))
    return 0


if __name__ == "__main__":
    sys.exit(main())
