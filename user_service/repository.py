"""The `users` collection: one document per user, with its pending events in `outbox`."""

from __future__ import annotations

from typing import Any

from pymongo import ASCENDING, ReturnDocument
from pymongo.errors import DuplicateKeyError

from shared.errors import Conflict
from shared.events.models import Preference
from shared.outbox import OUTBOX_FIELD
from user_service.purchases import (
    APPLIED_FIELD,
    LATEST_FIELD,
    VERSION_FIELD,
    UserOrderWrite,
)

USERS = "users"
ORDER_EVENT_FIELDS = {
    "email": 1,
    "preferences": 1,
    APPLIED_FIELD: 1,
    LATEST_FIELD: 1,
    VERSION_FIELD: 1,
}


class UserRepository:
    """Reads and single-document writes of users."""

    def __init__(self, db: Any) -> None:
        self.users: Any = db[USERS]

    async def ensure_indexes(self) -> None:
        """The unique email index is what makes registration race-free."""
        await self.users.create_index([("email", ASCENDING)], unique=True, name="email_unique")

    async def insert(self, user: dict[str, Any], outbox: list[dict[str, Any]]) -> None:
        """Store a new user together with the events it announces; a taken email conflicts."""
        try:
            await self.users.insert_one({**user, OUTBOX_FIELD: outbox})
        except DuplicateKeyError:
            raise Conflict("That email is already registered.") from None

    async def by_email(self, email: str) -> dict[str, Any] | None:
        """The user with that (normalised) email."""
        return await self.users.find_one({"email": email}, {OUTBOX_FIELD: 0})

    async def by_id(self, user_id: str) -> dict[str, Any] | None:
        """The user with that id."""
        return await self.users.find_one({"_id": user_id}, {OUTBOX_FIELD: 0})

    async def set_preferences(
        self, user_id: str, preferences: list[Preference], outbox_entry: dict[str, Any]
    ) -> dict[str, Any] | None:
        """Replace the preferences and queue their event in one write; None if no such user."""
        return await self.users.find_one_and_update(
            {"_id": user_id},
            {"$set": {"preferences": preferences}, "$push": {OUTBOX_FIELD: outbox_entry}},
            projection={OUTBOX_FIELD: 0},
            return_document=ReturnDocument.AFTER,
        )

    async def for_order_events(self, user_id: str) -> dict[str, Any] | None:
        """The fields that applying order events reads (not the history, which only grows)."""
        return await self.users.find_one({"_id": user_id}, ORDER_EVENT_FIELDS)

    async def apply_order_updates(
        self,
        user_id: str,
        *,
        version: int | None,
        write: UserOrderWrite,
        outbox: list[dict[str, Any]],
    ) -> bool:
        """Apply order events' changes and queue their events in one write, only if no other
        order change landed since the user was read at `version`; False if one did."""
        push: dict[str, Any] = {
            APPLIED_FIELD: {"$each": write.applied_keys},
            OUTBOX_FIELD: {"$each": outbox},
        }
        if write.history_entries:
            push["purchase_history"] = {"$each": write.history_entries}
        update: dict[str, Any] = {"$inc": {VERSION_FIELD: 1}, "$push": push}
        if write.set_fields:
            update["$set"] = write.set_fields
        # A missing version matches None: users stored before their first order.
        result = await self.users.update_one({"_id": user_id, VERSION_FIELD: version}, update)
        return bool(result.matched_count)

    async def count(self, query: dict[str, Any]) -> int:
        """How many users match (tests and checks)."""
        return int(await self.users.count_documents(query))
