"""`python -m user_service.migrate_purchases`: move the purchase history users stored before
issue 15 (`purchase_history` and `order_events` inside the user document) to `purchases`, one
document per order. Idempotent; run it with the user service stopped (docs/migrations.md)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from shared.mongo import MongoStore
from shared.times import as_utc
from user_service.domain import STATUSES_FIELD
from user_service.repository import LEGACY_APPLIED, LEGACY_HISTORY, UserRepository
from user_service.settings import UserSettings

BATCH = 500


@dataclass
class Moved:
    """What a migration did."""

    users: int = 0
    purchases: int = 0


def purchases_of(user: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The purchase documents a user's embedded history stands for (statuses from its applied
    `<order_id>:<status>` keys, so no status is notified a second time)."""
    applied: list[str] = list(user.get(LEGACY_APPLIED, []))
    documents = []
    for entry in user.get(LEGACY_HISTORY, []):
        prefix = f"{entry['order_id']}:"
        documents.append(
            {
                "_id": entry["order_id"],
                "user_id": user["_id"],
                "products": list(entry.get("products", [])),
                "purchase_date": as_utc(entry["purchase_date"]),
                STATUSES_FIELD: [key[len(prefix) :] for key in applied if key.startswith(prefix)],
                "outbox": [],
            }
        )
    return documents


async def migrate(repository: UserRepository) -> Moved:
    """Move every embedded history; a user's arrays are dropped once their orders are in."""
    moved = Moved()
    while users := await repository.with_embedded_history(BATCH):
        for user in users:
            for purchase in purchases_of(user):
                moved.purchases += await repository.insert_purchase_if_absent(purchase)
            await repository.drop_embedded_history(user["_id"])
            moved.users += 1
    return moved


async def main() -> None:
    settings = UserSettings()
    store = MongoStore(settings.mongo_uri, settings.database_name)
    try:
        repository = UserRepository(store.db)
        await repository.ensure_indexes()
        moved = await migrate(repository)
        print(f"moved {moved.purchases} purchase(s) of {moved.users} user(s)")
    finally:
        await store.close()


if __name__ == "__main__":
    asyncio.run(main())
