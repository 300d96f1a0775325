"""The only code that touches the user service's database: its two collections and indexes.

- `users`: one document per user (with a bounded order summary), its pending events in
  `outbox`.
- `purchases`: one document per order of a user (`_id` = order id), newest first by
  `(user_id, purchase_date)`, with the statuses applied and their pending events in `outbox`.
"""

from __future__ import annotations

from typing import Any

from pymongo import ASCENDING, DESCENDING, ReturnDocument
from pymongo.errors import DuplicateKeyError

from shared.auth import ROLE_CUSTOMER
from shared.errors import Conflict
from shared.events.models import Preference
from shared.outbox import OUTBOX_FIELD
from user_service.domain import (
    AUTH_VERSION_FIELD,
    LATEST_FIELD,
    ROLES_FIELD,
    SESSIONS_FIELD,
    STATUSES_FIELD,
    VERIFIED_FIELD,
    VERSION_FIELD,
    NewSession,
)

USERS = "users"
PURCHASES = "purchases"
# Where users stored before issue 15 kept their history (read only by the migration).
LEGACY_HISTORY = "purchase_history"
LEGACY_APPLIED = "order_events"
ORDER_EVENT_FIELDS = {"email": 1, "preferences": 1, LATEST_FIELD: 1, VERSION_FIELD: 1}


class UserRepository:
    """Reads and single-document writes of users and their purchases."""

    def __init__(self, db: Any) -> None:
        self.users: Any = db[USERS]
        self.purchases: Any = db[PURCHASES]

    async def ensure_indexes(self) -> None:
        """The unique email index is what makes registration race-free; a user's purchases
        are read newest first (the history's query and sort)."""
        await self.users.create_index([("email", ASCENDING)], unique=True, name="email_unique")
        await self.purchases.create_index(
            [("user_id", ASCENDING), ("purchase_date", DESCENDING), ("_id", DESCENDING)],
            name="user_newest_first",
        )

    async def migrate_identity(self) -> int:
        """Users stored before verified email and stored roles get them once: not verified,
        customer only (an ADMIN_EMAILS address becomes admin when it verifies, or an operator
        grants it). Idempotent; answers how many users were changed."""
        result = await self.users.update_many(
            {ROLES_FIELD: {"$exists": False}},
            {"$set": {ROLES_FIELD: [ROLE_CUSTOMER], VERIFIED_FIELD: False, SESSIONS_FIELD: {}}},
        )
        return int(result.modified_count)

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

    async def set_fields(
        self,
        user_id: str,
        fields: dict[str, Any],
        *,
        when: dict[str, Any] | None = None,
        outbox: list[dict[str, Any]] | None = None,
    ) -> dict[str, Any] | None:
        """Set fields (and queue events) in one write if the user still matches `when`; the
        user after the write, or None when no user matched."""
        update: dict[str, Any] = {"$set": fields}
        if outbox:
            update["$push"] = {OUTBOX_FIELD: {"$each": outbox}}
        return await self.users.find_one_and_update(
            {"_id": user_id, **(when or {})},
            update,
            projection={OUTBOX_FIELD: 0},
            return_document=ReturnDocument.AFTER,
        )

    async def open_session(
        self,
        user_id: str,
        session: NewSession,
        drop: list[str],
        outbox: list[dict[str, Any]],
    ) -> None:
        """Add a session, drop others and queue events (their revocation) in one write."""
        update: dict[str, Any] = {
            "$set": {f"{SESSIONS_FIELD}.{session.session_id}": session.document},
            "$inc": {AUTH_VERSION_FIELD: 1},
        }
        if drop:
            update["$unset"] = {f"{SESSIONS_FIELD}.{sid}": "" for sid in drop}
        if outbox:
            update["$push"] = {OUTBOX_FIELD: {"$each": outbox}}
        await self.users.update_one({"_id": user_id}, update)

    async def rotate_session(
        self,
        user_id: str,
        session_id: str,
        *,
        old_hash: str,
        new_hash: str,
        expires_at: Any,
        keep: int,
    ) -> bool:
        """Replace a session's refresh hash if it is still `old_hash` (kept among the used
        ones, the newest `keep`); False when another refresh got there first."""
        path = f"{SESSIONS_FIELD}.{session_id}"
        result = await self.users.update_one(
            {"_id": user_id, f"{path}.hash": old_hash},
            {
                "$set": {f"{path}.hash": new_hash, f"{path}.expires_at": expires_at},
                "$push": {f"{path}.used": {"$each": [old_hash], "$slice": -keep}},
            },
        )
        return bool(result.matched_count)

    async def replace_sessions(
        self,
        user_id: str,
        *,
        version: int | None,
        ended: list[str],
        new: NewSession | None,
        fields: dict[str, Any],
        unset: list[str],
        outbox: list[dict[str, Any]],
    ) -> dict[str, Any] | None:
        """End sessions, maybe open one, set fields and queue events in one write, only if
        the session set is still at `version`; the user after it, or None if it changed."""
        set_fields = dict(fields)
        if new is not None:
            set_fields[f"{SESSIONS_FIELD}.{new.session_id}"] = new.document
        update: dict[str, Any] = {"$inc": {AUTH_VERSION_FIELD: 1}}
        if set_fields:
            update["$set"] = set_fields
        removed = {f"{SESSIONS_FIELD}.{sid}": "" for sid in ended} | dict.fromkeys(unset, "")
        if removed:
            update["$unset"] = removed
        if outbox:
            update["$push"] = {OUTBOX_FIELD: {"$each": outbox}}
        # A missing version matches None: users stored before sessions existed.
        return await self.users.find_one_and_update(
            {"_id": user_id, AUTH_VERSION_FIELD: version},
            update,
            projection={OUTBOX_FIELD: 0},
            return_document=ReturnDocument.AFTER,
        )

    async def for_order_events(self, user_id: str) -> dict[str, Any] | None:
        """The fields that applying order events reads (the bounded summary)."""
        return await self.users.find_one({"_id": user_id}, ORDER_EVENT_FIELDS)

    async def set_order_summary(
        self, user_id: str, *, version: int | None, fields: dict[str, Any]
    ) -> bool:
        """Set the order summary, only if no other order change landed since the user was
        read at `version`; False if one did."""
        # A missing version matches None: users stored before their first order.
        result = await self.users.update_one(
            {"_id": user_id, VERSION_FIELD: version},
            {"$set": fields, "$inc": {VERSION_FIELD: 1}},
        )
        return bool(result.matched_count)

    async def with_embedded_history(self, limit: int) -> list[dict[str, Any]]:
        """Users still holding the history of before issue 15 (the migration's input)."""
        cursor = self.users.find(
            {"$or": [{LEGACY_HISTORY: {"$exists": True}}, {LEGACY_APPLIED: {"$exists": True}}]},
            {LEGACY_HISTORY: 1, LEGACY_APPLIED: 1},
        ).limit(limit)
        return list(await cursor.to_list(None))

    async def drop_embedded_history(self, user_id: str) -> None:
        """Remove the user's embedded history once it is in `purchases`."""
        await self.users.update_one(
            {"_id": user_id}, {"$unset": {LEGACY_HISTORY: "", LEGACY_APPLIED: ""}}
        )

    async def count(self, query: dict[str, Any]) -> int:
        """How many users match (tests and checks)."""
        return int(await self.users.count_documents(query))

    # --- purchases: one document per order, its statuses applied and their pending events ---

    async def applied_statuses(self, order_ids: list[str]) -> dict[str, list[str]]:
        """The statuses already applied of those orders that have a purchase."""
        cursor = self.purchases.find({"_id": {"$in": order_ids}}, {STATUSES_FIELD: 1})
        return {doc["_id"]: list(doc.get(STATUSES_FIELD, [])) for doc in await cursor.to_list(None)}

    async def apply_statuses(
        self,
        order_id: str,
        *,
        fields: dict[str, Any],
        statuses: list[str],
        outbox: list[dict[str, Any]],
    ) -> bool:
        """Record statuses of an order (creating its purchase with `fields`) and queue their
        events in one write, only if none of them was applied meanwhile; False if one was."""
        try:
            result = await self.purchases.update_one(
                {"_id": order_id, STATUSES_FIELD: {"$nin": statuses}},
                {
                    "$setOnInsert": fields,
                    "$push": {
                        STATUSES_FIELD: {"$each": statuses},
                        OUTBOX_FIELD: {"$each": outbox},
                    },
                },
                upsert=True,
            )
        except DuplicateKeyError:  # the purchase exists and holds one of them
            return False
        return bool(result.matched_count or result.upserted_id is not None)

    async def newest_purchases(self, user_id: str, limit: int) -> list[dict[str, Any]]:
        """The user's newest `limit` purchases, newest first."""
        cursor = (
            self.purchases.find({"user_id": user_id}, {OUTBOX_FIELD: 0})
            .sort([("purchase_date", DESCENDING), ("_id", DESCENDING)])
            .limit(limit)
        )
        return list(await cursor.to_list(None))

    async def insert_purchase_if_absent(self, purchase: dict[str, Any]) -> bool:
        """Store a purchase unless one with its id exists (the migration); True if stored."""
        try:
            await self.purchases.insert_one(purchase)
        except DuplicateKeyError:
            return False
        return True
