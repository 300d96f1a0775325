"""The `notifications` collection: one document per notification, keyed by its event id."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from pymongo import ASCENDING, DESCENDING, ReturnDocument
from pymongo.errors import BulkWriteError, DuplicateKeyError

from notification_service.domain import DeliveryStatus
from shared.outbox import OUTBOX_FIELD

NOTIFICATIONS = "notifications"
# A verification or reset link, kept only until its mail is sent (or given up).
LINK_FIELD = "link"
_NEWEST_FIRST = [("sent_at", DESCENDING), ("_id", DESCENDING)]
_DUPLICATE_KEY = 11000


class NotificationRepository:
    """Reads and writes of notifications: the only code that touches the collection."""

    def __init__(self, db: Any) -> None:
        self.notifications: Any = db[NOTIFICATIONS]

    async def ensure_indexes(self) -> None:
        """A user's notifications, newest first, come from one index; due mail from another."""
        await self.notifications.create_index(
            [("user_id", ASCENDING), ("sent_at", DESCENDING)], name="user_newest_first"
        )
        await self.notifications.create_index(
            [("delivery.status", ASCENDING), ("delivery.next_attempt_at", ASCENDING)],
            name="due_mail",
        )

    async def insert_new(self, notification: dict[str, Any], outbox: list[dict[str, Any]]) -> bool:
        """Store a notification with its pending events; False if it was stored already."""
        try:
            await self.notifications.insert_one({**notification, OUTBOX_FIELD: outbox})
        except DuplicateKeyError:
            return False
        return True

    async def insert_new_many(
        self, notifications: Sequence[tuple[dict[str, Any], list[dict[str, Any]]]]
    ) -> set[str]:
        """Store notifications with their pending events in one write; returns the ids stored
        now (those already stored, e.g. a redelivered batch, are skipped)."""
        documents = [
            {**notification, OUTBOX_FIELD: outbox} for notification, outbox in notifications
        ]
        ids = {document["_id"] for document in documents}
        try:
            await self.notifications.insert_many(documents, ordered=False)
        except BulkWriteError as exc:
            errors = exc.details.get("writeErrors", [])
            if any(error.get("code") != _DUPLICATE_KEY for error in errors) or not errors:
                raise
            ids -= {documents[error["index"]]["_id"] for error in errors}
        return ids

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

    async def claim_due_mail(
        self, now: datetime, lease_until: datetime, lease: str
    ) -> dict[str, Any] | None:
        """Claim the most overdue pending mail: push its due time to `lease_until` and tag it
        with `lease`, in one write, so no other sender (replica) picks it up meanwhile."""
        claimed: dict[str, Any] | None = await self.notifications.find_one_and_update(
            {
                "delivery.status": DeliveryStatus.PENDING.value,
                "delivery.next_attempt_at": {"$lte": now},
            },
            {"$set": {"delivery.next_attempt_at": lease_until, "delivery.lease": lease}},
            sort=[("delivery.next_attempt_at", ASCENDING)],
            projection={OUTBOX_FIELD: 0},
            return_document=ReturnDocument.AFTER,
        )
        return claimed

    async def due_mail_ids(self, now: datetime, limit: int) -> list[str]:
        """The ids of up to `limit` due pending mails, most overdue first: one query for a
        batch of claims (`claim_mail`), where claiming each by a query of its own rescanned
        every pending mail of the in-process store."""
        cursor = (
            self.notifications.find(
                {
                    "delivery.status": DeliveryStatus.PENDING.value,
                    "delivery.next_attempt_at": {"$lte": now},
                },
                {"_id": 1},
            )
            .sort([("delivery.next_attempt_at", ASCENDING)])
            .limit(limit)
        )
        return [document["_id"] for document in await cursor.to_list(None)]

    async def claim_mail(
        self, notification_id: str, now: datetime, lease_until: datetime, lease: str
    ) -> dict[str, Any] | None:
        """Claim that mail if it is still due and pending (another sender may have taken it
        since `due_mail_ids`): as `claim_due_mail`, one conditional write."""
        claimed: dict[str, Any] | None = await self.notifications.find_one_and_update(
            {
                "_id": notification_id,
                "delivery.status": DeliveryStatus.PENDING.value,
                "delivery.next_attempt_at": {"$lte": now},
            },
            {"$set": {"delivery.next_attempt_at": lease_until, "delivery.lease": lease}},
            projection={OUTBOX_FIELD: 0},
            return_document=ReturnDocument.AFTER,
        )
        return claimed

    async def mark_sent(self, notification_id: str, lease: str, sent_at: datetime) -> bool:
        """The claimed mail went out; False if the lease was lost meanwhile. A link it
        carried (verification, reset) is not kept: it is a credential, needed only to send."""
        return await self._settle(
            notification_id,
            lease,
            {
                "delivery.status": DeliveryStatus.SENT.value,
                "delivery.last_error": None,
                "delivery.next_attempt_at": None,
                "delivery.sent_at": sent_at,
                LINK_FIELD: None,
            },
        )

    async def mark_retry(
        self, notification_id: str, lease: str, error: str, next_attempt_at: datetime
    ) -> bool:
        """The attempt failed; stays pending, due again at `next_attempt_at`."""
        return await self._settle(
            notification_id,
            lease,
            {"delivery.last_error": error, "delivery.next_attempt_at": next_attempt_at},
        )

    async def mark_failed(self, notification_id: str, lease: str, error: str) -> bool:
        """The last attempt failed: the mail is given up (and any link it carried)."""
        return await self._settle(
            notification_id,
            lease,
            {
                "delivery.status": DeliveryStatus.FAILED.value,
                "delivery.last_error": error,
                "delivery.next_attempt_at": None,
                LINK_FIELD: None,
            },
        )

    async def _settle(self, notification_id: str, lease: str, changes: dict[str, Any]) -> bool:
        result = await self.notifications.update_one(
            {
                "_id": notification_id,
                "delivery.status": DeliveryStatus.PENDING.value,
                "delivery.lease": lease,
            },
            {"$set": {**changes, "delivery.lease": None}, "$inc": {"delivery.attempts": 1}},
        )
        return bool(result.modified_count)
