"""The `notifications` collection: one document per notification, keyed by its event id."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pymongo import ASCENDING, DESCENDING, ReturnDocument
from pymongo.errors import DuplicateKeyError

from notification_service.domain import DeliveryStatus
from shared.outbox import OUTBOX_FIELD

NOTIFICATIONS = "notifications"
_NEWEST_FIRST = [("sent_at", DESCENDING), ("_id", DESCENDING)]


class NotificationRepository:
    """Reads and single-document writes of notifications."""

    def __init__(self, db: Any) -> None:
        self.notifications: Any = db[NOTIFICATIONS]

    async def ensure_indexes(self) -> None:
        """A user's notifications, newest first, come from one index."""
        await self.notifications.create_index(
            [("user_id", ASCENDING), ("sent_at", DESCENDING)], name="user_newest_first"
        )

    async def insert_new(self, notification: dict[str, Any], outbox: list[dict[str, Any]]) -> bool:
        """Store a notification with its pending events; False if it was stored already."""
        try:
            await self.notifications.insert_one({**notification, OUTBOX_FIELD: outbox})
        except DuplicateKeyError:
            return False
        return True

    async def get(self, notification_id: str) -> dict[str, Any] | None:
        """One notification by id."""
        return await self.notifications.find_one({"_id": notification_id}, {OUTBOX_FIELD: 0})

    async def list_for_user(
        self, user_id: str, *, unread_only: bool, limit: int
    ) -> list[dict[str, Any]]:
        """A user's notifications, newest first."""
        query: dict[str, Any] = {"user_id": user_id}
        if unread_only:
            query["read"] = False
        cursor = self.notifications.find(query, {OUTBOX_FIELD: 0}).sort(_NEWEST_FIRST).limit(limit)
        return await cursor.to_list(None)

    async def mark_read(
        self, notification_id: str, user_id: str, outbox: dict[str, Any]
    ) -> tuple[dict[str, Any] | None, bool]:
        """Mark the user's own notification read, queueing `outbox` with the change.

        Returns the notification (None if missing or another user's) and whether this call
        changed it; reading it again changes nothing and queues nothing.
        """
        changed = await self.notifications.find_one_and_update(
            {"_id": notification_id, "user_id": user_id, "read": False},
            {"$set": {"read": True}, "$push": {OUTBOX_FIELD: outbox}},
            projection={OUTBOX_FIELD: 0},
            return_document=ReturnDocument.AFTER,
        )
        if changed is not None:
            return changed, True
        current = await self.notifications.find_one(
            {"_id": notification_id, "user_id": user_id}, {OUTBOX_FIELD: 0}
        )
        return current, False

    async def record_delivery(
        self,
        notification_id: str,
        status: DeliveryStatus,
        *,
        error: str | None,
        sent_at: datetime | None,
    ) -> None:
        """Record one send attempt's outcome."""
        await self.notifications.update_one(
            {"_id": notification_id},
            {
                "$set": {
                    "delivery.status": status.value,
                    "delivery.last_error": error,
                    "delivery.sent_at": sent_at,
                },
                "$inc": {"delivery.attempts": 1},
            },
        )
