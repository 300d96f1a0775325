"""The `users` collection: one document per user, with its pending events in `outbox`."""

from __future__ import annotations

from typing import Any

from pymongo import ASCENDING, ReturnDocument
from pymongo.errors import DuplicateKeyError

from shared.errors import Conflict
from shared.events.models import Preference
from shared.outbox import OUTBOX_FIELD
from user_service.purchases import APPLIED_FIELD, VERSION_FIELD, OrderUpdatePlan

USERS = "users"


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

    async def apply_order_update(
        self,
        user_id: str,
        *,
        version: int | None,
        plan: OrderUpdatePlan,
        outbox: list[dict[str, Any]],
    ) -> bool:
        """Apply an order event's change and queue its events in one write, only if no other
        order change landed since the user was read at `version`; False if one did."""
        push: dict[str, Any] = {
            APPLIED_FIELD: plan.applied_key,
            OUTBOX_FIELD: {"$each": outbox},
        }
        if plan.history_entry is not None:
            push["purchase_history"] = plan.history_entry
        update: dict[str, Any] = {"$inc": {VERSION_FIELD: 1}, "$push": push}
        if plan.set_fields:
            update["$set"] = plan.set_fields
        # A missing version matches None: users stored before their first order.
        result = await self.users.update_one({"_id": user_id, VERSION_FIELD: version}, update)
        return bool(result.matched_count)

    async def count(self, query: dict[str, Any]) -> int:
        """How many users match (tests and checks)."""
        return int(await self.users.count_documents(query))
