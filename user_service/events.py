"""The events the user service publishes, and (later) the handlers of the topics it consumes.

Published through the outbox of the user's document: `user.registered`,
`user.preferences-updated`. Consumed: none yet; `order.placed` and `order.status-changed`
handlers go into `consumer_handlers`, and `main` starts a consumer as soon as it is non-empty.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from shared.bus import Handler
from shared.events.models import Preference, UserPreferencesUpdated, UserRegistered
from user_service.repository import UserRepository

CONSUMER_GROUP = "user_service"


def user_registered(user: Mapping[str, Any]) -> UserRegistered:
    """The event announcing a stored user."""
    return UserRegistered(
        user_id=user["_id"],
        name=user["name"],
        email=user["email"],
        preferences=user["preferences"],
    )


def preferences_updated(user_id: str, preferences: list[Preference]) -> UserPreferencesUpdated:
    """The event announcing a user's new preferences."""
    return UserPreferencesUpdated(user_id=user_id, preferences=preferences)


def consumer_handlers(repository: UserRepository) -> dict[str, Handler]:
    """The topics this service consumes (group `user_service`) and their handlers."""
    del repository  # used by the order handlers to come
    return {}
