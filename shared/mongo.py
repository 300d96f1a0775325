"""MongoDB access through PyMongo's async API; `memory://` selects an in-process store.

The in-process store is local tooling (devstack/memory_store.py, never in an image, so asking
for it there is a clear error): mongomock behind mongomock-motor's async calls, with hash indexes:
lookups by `_id` or by equality on the leading field of a declared index (and unique-index
checks) touch only the matching documents instead of every document, with mongomock's results.
Services keep to the operations both implement (insert/find/update/delete, find_one_and_update,
count_documents, create_index; no aggregate, no transactions), inside their repository modules,
and declare with `create_index` the fields they look documents up by.
"""

from __future__ import annotations

from typing import Any

from pymongo import AsyncMongoClient

MEMORY_SCHEME = "memory://"


class InProcessStoreMissing(RuntimeError):
    """`MONGO_URI=memory://` where the local tooling is not installed (a service image)."""


def _in_process_client() -> Any:
    try:
        from mongomock_motor import AsyncMongoMockClient

        from devstack.memory_store import IndexedMongoClient
    except ImportError as exc:
        raise InProcessStoreMissing(
            f"MONGO_URI={MEMORY_SCHEME} is the in-process store of the local stack (make run, the "
            "tests); it is not installed here: set MONGO_URI to a MongoDB server"
        ) from exc
    return AsyncMongoMockClient(mock_mongo_client=IndexedMongoClient(tz_aware=True))


class MongoStore:
    """One client per process and the database this service owns."""

    def __init__(self, uri: str, database: str) -> None:
        self.in_memory = uri.startswith(MEMORY_SCHEME)
        self.client: Any
        if self.in_memory:
            self.client = _in_process_client()
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
