"""mongomock with hash indexes: the in-process store behind `MONGO_URI=memory://` (local stack
and tests only; shared/mongo.py loads it when that URI is asked for).

mongomock answers every find, update, delete, count and unique-index check by testing each
document of the collection against the filter, so a service storing n documents pays O(n) per
operation. Here each collection also keeps, for the leading field of every index declared with
`create_index`, a map from value to the keys of the documents holding it
(devstack.memory_index), and `_id` lookups use mongomock's own key-to-document dict. A filter
with an equality (`v`, `{"$eq": v}`, `{"$in": [...]}`) on `_id` or on such a field, or
`{"$exists": true}` on such a field (the outbox relay's `outbox.0`), at the top level or inside
`$and` (or in every branch of an `$or`), is tested only against those documents, in mongomock's
(insertion) order, with mongomock's own `filter_applies`; so are unique-index checks, which
query the new value. Any other filter is mongomock's full scan. Results are mongomock's.

The maps follow every write: the store re-files a document whenever it is stored or removed
(insert, rollback, delete, TTL expiry, drop), the collection after each in-place update. What
differs: a cursor being read lazily does not pick up a document changed to match after the read
began (mongomock's would; MongoDB promises neither), and a filter that crashes mongomock on
some document (IndexError on `a.-1` of an empty list) only does so if that document is a
candidate.

Documents are copied with devstack.memory_copy's `tree_copy` instead of `copy.deepcopy` (the
same result for documents, a fraction of the time).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

from mongomock.collection import Collection
from mongomock.database import Database
from mongomock.filtering import filter_applies
from mongomock.mongo_client import MongoClient
from mongomock.store import CollectionStore, DatabaseStore, ServerStore
from pymongo.errors import BulkWriteError, DuplicateKeyError
from pymongo.operations import DeleteMany, DeleteOne, InsertOne, ReplaceOne, UpdateMany, UpdateOne
from pymongo.results import BulkWriteResult

from devstack import memory_copy
from devstack.memory_index import FieldIndex, lookup_key, wanted_keys

# MongoDB's code of a duplicate key error.
DUPLICATE_KEY = 11000


class IndexedCollectionStore(CollectionStore):
    """mongomock's documents of one collection, with the maps that narrow lookups."""

    def __init__(self, name: str) -> None:
        self._fields: dict[str, FieldIndex] = {}
        self._position: dict[Any, int] = {}
        self._next_position = itertools.count()
        self._key_of_document: dict[int, Any] = {}  # id() of a stored document -> its key
        self._irregular_ids: set[Any] = set()
        self._indexes: dict[str, Any] = {}
        super().__init__(name)

    @property
    def indexes(self) -> dict[str, Any]:
        """The declared indexes (mongomock's), name -> description."""
        return self._indexes

    @indexes.setter
    def indexes(self, indexes: dict[str, Any]) -> None:
        self._indexes = indexes
        self._sync_fields()

    def create_index(self, index_name: str, index_dict: dict[str, Any]) -> None:
        super().create_index(index_name, index_dict)
        self._sync_fields()

    def drop_index(self, index_name: str) -> None:
        super().drop_index(index_name)
        self._sync_fields()

    def drop(self) -> None:
        super().drop()  # also resets the indexes, and with them the field maps
        self._position.clear()
        self._key_of_document.clear()
        self._irregular_ids.clear()

    def __setitem__(self, key: Any, document: Any) -> None:
        replaced = self._documents.get(key)
        super().__setitem__(key, document)
        if replaced is not None:
            self._key_of_document.pop(id(replaced), None)
        self._position.setdefault(key, next(self._next_position))
        self._key_of_document[id(document)] = key
        self._file(key, document)

    def __delitem__(self, key: Any) -> None:
        document = self._documents[key]
        super().__delitem__(key)
        del self._position[key]
        self._key_of_document.pop(id(document), None)
        self._irregular_ids.discard(key)
        for field in self._fields.values():
            field.remove(key)

    def refile(self, document: Any) -> None:
        """Re-file a stored document that was changed in place (nothing if not stored)."""
        key = self._key_of_document.get(id(document))
        if key is not None and self._documents.get(key) is document:
            self._file(key, document)

    def candidates(self, spec: Any) -> list[Any] | None:
        """The documents that may match, in mongomock's order; None when no index narrows."""
        self._remove_expired_documents()
        keys = self._keys_for(spec)
        if keys is None:
            return None
        with self._rwlock.reader():
            stored = [key for key in keys if key in self._documents]
            return [self._documents[key] for key in sorted(stored, key=self._position.__getitem__)]

    @property
    def has_irregular_ids(self) -> bool:
        """Whether some document's key cannot be trusted to be its `_id` (see `_file`)."""
        return bool(self._irregular_ids)

    def _file(self, key: Any, document: Any) -> None:
        id_key = lookup_key(key)
        # A key that hashing cannot find, or a document whose _id no longer equals its key
        # (mongomock leaves one behind when a replacement changes _id), is always a candidate.
        if id_key is None or lookup_key(document.get("_id")) != id_key:
            self._irregular_ids.add(key)
        else:
            self._irregular_ids.discard(key)
        for field in self._fields.values():
            field.file(key, document)

    def _sync_fields(self) -> None:
        leading = {index["key"][0][0] for index in self._indexes.values() if index.get("key")}
        wanted = leading - {"_id"}  # _id lookups go to the documents dict itself
        self._fields = {path: field for path, field in self._fields.items() if path in wanted}
        for path in wanted - self._fields.keys():
            field = self._fields[path] = FieldIndex(path)
            for key, document in self._documents.items():
                field.file(key, document)

    def _keys_for(self, spec: Any) -> set[Any] | None:
        """The smallest candidate key set any one clause of the filter allows, or None."""
        if not isinstance(spec, dict):
            return None
        best: set[Any] | None = None
        for name, condition in spec.items():
            for keys in self._clause_keys(name, condition):
                if keys is not None and (best is None or len(keys) < len(best)):
                    best = keys
        return best

    def _clause_keys(self, name: Any, condition: Any) -> Iterator[set[Any] | None]:
        if name == "$and" and isinstance(condition, list):
            yield from (self._keys_for(part) for part in condition)
        elif name == "$or" and isinstance(condition, list) and condition:
            either: set[Any] = set()
            for part in condition:
                branch = self._keys_for(part)
                if branch is None:
                    return  # one branch that no index narrows: no narrowing at all
                either |= branch
            yield either
        elif name == "_id":
            wanted = wanted_keys(condition)
            if wanted is not None:
                yield {key for key in wanted if key in self._documents} | self._irregular_ids
        elif name in self._fields:
            yield self._fields[name].keys_for(condition)


def _by_string_ids(spec: Any) -> bool:
    """Whether a filter is only `{"_id": "x"}` or `{"_id": {"$in": ["x", ...]}}`."""
    if not isinstance(spec, dict) or spec.keys() != {"_id"}:
        return False
    condition = spec["_id"]
    if type(condition) is str:
        return True
    return (
        isinstance(condition, dict)
        and condition.keys() == {"$in"}
        and isinstance(condition["$in"], list)
        and all(type(value) is str for value in condition["$in"])
    )


class IndexedDatabaseStore(DatabaseStore):
    """A database's collections, each an IndexedCollectionStore."""

    def __getitem__(self, col_name: str) -> IndexedCollectionStore:
        if col_name not in self._collections:
            self._collections[col_name] = IndexedCollectionStore(col_name)
        collection: IndexedCollectionStore = self._collections[col_name]
        return collection

    def rename(self, name: str, new_name: str) -> None:
        if name not in self._collections:  # the base would invent a plain CollectionStore
            self._collections[name] = IndexedCollectionStore(name)
        super().rename(name, new_name)


class IndexedServerStore(ServerStore):
    """The databases of one client, each an IndexedDatabaseStore."""

    def __getitem__(self, db_name: str) -> IndexedDatabaseStore:
        if db_name not in self._databases:
            self._databases[db_name] = IndexedDatabaseStore()
        database: IndexedDatabaseStore = self._databases[db_name]
        return database


class IndexedCollection(Collection):
    """mongomock's Collection, reading its candidates through the store's indexes."""

    def _iter_documents(self, filter: Any) -> Iterator[Any]:
        documents = self._store.candidates(filter)
        if documents is None:
            return super()._iter_documents(filter)
        if _by_string_ids(filter) and not self._store.has_irregular_ids:
            # The _id dict found exactly these: matching each against a long `$in` list again
            # (mongomock's `$in` is linear) was most of clearing a batch's outbox entries.
            return iter(documents)
        if not documents:
            filter_applies(filter, {})  # mongomock validates the filter even when nothing can match
        return (document for document in documents if filter_applies(filter, document))

    def _apply_update_document(self, existing_document: Any, *args: Any) -> None:
        try:
            super()._apply_update_document(existing_document, *args)
        finally:
            self._store.refile(existing_document)

    def _apply_update_pipeline(self, existing_document: Any, *args: Any) -> None:
        try:
            super()._apply_update_pipeline(existing_document, *args)
        finally:
            self._store.refile(existing_document)

    def bulk_write(
        self,
        requests: Any,
        ordered: bool = True,
        bypass_document_validation: bool = False,
        session: Any = None,
        **kwargs: Any,
    ) -> BulkWriteResult:
        """PyMongo's bulk write, one operation after the other (mongomock's breaks on pymongo
        4.20's operations): a duplicate key stops an ordered write, and is reported with the
        others at the end of an unordered one, as `BulkWriteError` like MongoDB's."""
        del bypass_document_validation, session, kwargs
        result: dict[str, Any] = {
            "writeErrors": [],
            "nInserted": 0,
            "nUpserted": 0,
            "nMatched": 0,
            "nModified": 0,
            "nRemoved": 0,
            "upserted": [],
        }
        for index, operation in enumerate(requests):
            try:
                self._bulk_one(operation, index, result)
            except DuplicateKeyError as exc:
                result["writeErrors"].append(
                    {"index": index, "code": DUPLICATE_KEY, "errmsg": str(exc), "op": operation}
                )
                if ordered:
                    break
        if result["writeErrors"]:
            raise BulkWriteError(result)
        return BulkWriteResult(result, acknowledged=True)

    def _bulk_one(self, operation: Any, index: int, result: dict[str, Any]) -> None:
        if isinstance(operation, InsertOne):
            self.insert_one(operation._doc)
            result["nInserted"] += 1
        elif isinstance(operation, UpdateOne | UpdateMany | ReplaceOne):
            options = {"upsert": bool(operation._upsert)}
            if isinstance(operation, ReplaceOne):
                outcome = self.replace_one(operation._filter, operation._doc, **options)
            elif isinstance(operation, UpdateOne):
                outcome = self.update_one(
                    operation._filter,
                    operation._doc,
                    array_filters=operation._array_filters,
                    **options,
                )
            else:
                outcome = self.update_many(
                    operation._filter,
                    operation._doc,
                    array_filters=operation._array_filters,
                    **options,
                )
            result["nMatched"] += outcome.matched_count
            result["nModified"] += outcome.modified_count
            if outcome.upserted_id is not None:
                result["nUpserted"] += 1
                result["upserted"].append({"index": index, "_id": outcome.upserted_id})
        elif isinstance(operation, DeleteOne):
            result["nRemoved"] += self.delete_one(operation._filter).deleted_count
        elif isinstance(operation, DeleteMany):
            result["nRemoved"] += self.delete_many(operation._filter).deleted_count
        else:
            raise TypeError(f"{operation!r} is not a bulk write operation")

    def with_options(self, *args: Any, **kwargs: Any) -> IndexedCollection:
        changed = super().with_options(*args, **kwargs)
        if changed is self:
            return self
        return IndexedCollection(
            self.database,
            self.name,
            _db_store=self._db_store,
            write_concern=changed.write_concern,
            read_concern=changed.read_concern,
            read_preference=changed.read_preference,
            codec_options=changed.codec_options,
        )


class IndexedDatabase(Database):
    """mongomock's Database handing out IndexedCollections."""

    def get_collection(
        self,
        name: str,
        codec_options: Any = None,
        read_preference: Any = None,
        write_concern: Any = None,
        read_concern: Any = None,
    ) -> IndexedCollection:
        if name not in self._collection_accesses:
            # Created as mongomock would on first access; the base then reuses it.
            self._ensure_valid_collection_name(name)
            self._collection_accesses[name] = IndexedCollection(
                self,
                name=name,
                read_concern=read_concern,
                write_concern=write_concern,
                read_preference=read_preference or self.read_preference,
                codec_options=codec_options or self._codec_options,
                _db_store=self._store,
            )
        collection: IndexedCollection = super().get_collection(
            name, codec_options, read_preference, write_concern, read_concern
        )
        return collection

    def with_options(self, *args: Any, **kwargs: Any) -> IndexedDatabase:
        changed = super().with_options(*args, **kwargs)
        if changed is self:
            return self
        return IndexedDatabase(
            self._client,
            self.name,
            self._store,
            read_preference=changed.read_preference,
            codec_options=changed.codec_options,
            read_concern=changed.read_concern,
        )


class IndexedMongoClient(MongoClient):
    """mongomock's MongoClient whose databases are IndexedDatabases over indexed stores."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        memory_copy.install()
        kwargs.setdefault("_store", IndexedServerStore())
        super().__init__(*args, **kwargs)

    def get_database(
        self,
        name: str | None = None,
        codec_options: Any = None,
        read_preference: Any = None,
        write_concern: Any = None,
        read_concern: Any = None,
    ) -> IndexedDatabase:
        if name is not None and name not in self._database_accesses:
            # Created as mongomock would on first access; the base then reuses it.
            self._database_accesses[name] = IndexedDatabase(
                self,
                name,
                read_preference=read_preference or self.read_preference,
                codec_options=codec_options or self._codec_options,
                _store=self._store[name],
                read_concern=read_concern,
            )
        database: IndexedDatabase = super().get_database(
            name, codec_options, read_preference, write_concern, read_concern
        )
        return database
