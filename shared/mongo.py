"""MongoDB access through PyMongo's async API; `memory://` selects an in-process store.

The in-process store is mongomock behind mongomock-motor's async calls, with the hash indexes
of shared.memory_store: lookups by `_id` or by equality on the leading field of a declared index
(and unique-index checks) touch only the matching documents instead of every document, with
mongomock's results. Services keep to the operations both implement (insert/find/update/delete,
find_one_and_update, count_documents, create_index; no aggregate, no transactions), inside their
repository modules, and declare with `create_index` the fields they look documents up by.
"""

from __future__ import annotations

from typing import Any

from pymongo import AsyncMongoClient

MEMORY_SCHEME = "memory://"


class MongoStore:
    """One client per process and the database this service owns."""

    def __init__(self, uri: str, database: str) -> None:
        self.in_memory = uri.startswith(MEMORY_SCHEME)
        self.client: Any
        if self.in_memory:
            from mongomock_motor import AsyncMongoMockClient

            from shared.memory_store import IndexedMongoClient

            self.client = AsyncMongoMockClient(mock_mongo_client=IndexedMongoClient(tz_aware=True))
        else:
            self.client = AsyncMongoClient(uri, tz_aware=True, serverSelectionTimeoutMS=5000)
        self.db: Any = self.client[database]

    async def ping(self) -> bool:
        """Whether the database answers."""
        if self.in_memory:
            return True
        try:
            await self.client.admin.command("ping")
        except Exception:
            return False
        return True

    async def close(self) -> None:
        """Close the client (PyMongo's `close()` is a coroutine, mongomock's is not)."""
        if not self.in_memory:
            await self.client.close()
