"""devstack.memory_store answers exactly like mongomock, and without scanning the collection."""

from __future__ import annotations

import enum
import random
from collections.abc import Callable, Iterator
from typing import Any

import mongomock
import pytest
from bson import ObjectId
from pymongo import ReturnDocument

from devstack.memory_store import IndexedCollection, IndexedMongoClient


class Kind(enum.StrEnum):
    U1 = "u1"


class Level(enum.IntEnum):
    ONE = 1


NAN = float("nan")
# Values that hash like what they equal, values that do not, and shapes that are never filed.
USERS: list[Any] = ["u1", "u2", "u3", Kind.U1, 1, 1.0, True, Level.ONE, 2.5, NAN, None]
USERS += [["u1", "u2"], {"x": 1}, ("u2",)]
IDS: list[Any] = [f"d{i}" for i in range(120)] + [1, 2, 2.0, ("d1", "d2"), {"k": 1}, Kind.U1]
STATUSES: list[Any] = ["pending", "sent", "failed", None]
TAGS = ["t1", "t2", "t3"]


class Scenario:
    """A seeded sequence of writes and reads, applied in turn to each collection."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)

    def pick(self, values: list[Any]) -> Any:
        return self.rng.choice(values)

    def delivery(self) -> Any:
        shape = self.rng.randrange(5)
        if shape == 0:
            return [{"status": self.pick(STATUSES)}]  # a list on the path
        if shape == 1:
            return "not a document"
        return {"status": self.pick(STATUSES), "next_attempt_at": self.rng.randrange(50)}

    def document(self) -> dict[str, Any]:
        document: dict[str, Any] = {"_id": self.pick(IDS), "code": f"c{self.rng.randrange(300)}"}
        if self.rng.random() < 0.9:
            document["user_id"] = self.pick(USERS)
        if self.rng.random() < 0.8:
            document["delivery"] = self.delivery()
        document["tags"] = self.rng.sample(TAGS, self.rng.randrange(3))
        document["n"] = self.rng.randrange(10)
        document["outbox"] = [{"id": self.pick(TAGS)} for _ in range(self.rng.randrange(3))]
        return document

    def clause(self) -> dict[str, Any]:
        kind = self.rng.randrange(14)
        if kind == 0:
            return {"_id": self.pick(IDS)}
        if kind == 1:
            return {"_id": {"$in": [self.pick(IDS), self.pick(IDS)]}}
        if kind == 2:
            return {"_id": {"$eq": self.pick(IDS)}}
        if kind == 3:
            return {"user_id": self.pick(USERS)}
        if kind == 4:
            return {"user_id": {"$in": [self.pick(USERS), self.pick(USERS)]}}
        if kind == 5:
            return {"delivery.status": self.pick(STATUSES)}
        if kind == 6:
            return {"code": f"c{self.rng.randrange(300)}"}
        if kind == 7:
            return {"tags": self.pick(TAGS)}
        if kind == 8:
            return {"n": {"$gte": self.rng.randrange(10)}}
        if kind == 9:
            return {"user_id": {"$eq": self.pick(USERS), "$ne": "u2"}}
        if kind == 10:
            return {"outbox.0": {"$exists": True}}  # the outbox relay's query
        if kind == 11:
            field = self.pick(["user_id", "delivery.status", "outbox.1", "outbox.0"])
            return {field: {"$exists": self.pick([True, 1, False])}}
        if kind == 12:
            return {"outbox.0.id": self.pick(TAGS)}
        return {}

    def filter(self) -> dict[str, Any]:
        shape = self.rng.randrange(5)
        if shape == 0:
            return {"$and": [self.clause(), self.clause()]}
        if shape == 1:
            return {"$or": [self.clause(), self.clause()]}
        if shape == 2:
            return {**self.clause(), **self.clause()}
        return self.clause()

    def update(self) -> dict[str, Any]:
        kind = self.rng.randrange(11)
        if kind == 0:
            return {"$set": {"user_id": self.pick(USERS)}}
        if kind == 1:
            return {"$set": {"delivery.status": self.pick(STATUSES)}}
        if kind == 2:
            return {"$set": {"delivery": self.delivery()}}
        if kind == 3:
            return {"$push": {"tags": self.pick(TAGS)}, "$inc": {"n": 1}}
        if kind == 4:
            return {"$unset": {"user_id": ""}}
        if kind == 5:
            return {"$set": {"code": f"c{self.rng.randrange(300)}"}}
        if kind == 6:
            return {"$addToSet": {"tags": self.pick(TAGS)}, "$set": {"status": self.pick(USERS)}}
        if kind == 7:
            return {"$pull": {"tags": self.pick(TAGS)}}
        if kind == 8:
            return {"$push": {"outbox": {"$each": [{"id": self.pick(TAGS)}]}}}
        if kind == 9:
            return {"$pull": {"outbox": {"id": self.pick(TAGS)}}}
        return {"$set": {"user_id": self.pick(USERS)}, "$setOnInsert": {"n": 99}}

    def steps(self, count: int) -> Iterator[Callable[[Any], Any]]:
        """Each step is a call on a collection; the same step is applied to both."""
        for _ in range(count):
            yield self.step()

    def step(self) -> Callable[[Any], Any]:
        op = self.rng.randrange(100)
        spec, update, upsert = self.filter(), self.update(), self.rng.random() < 0.3
        if op < 30:
            document = self.document()
            return lambda c: c.insert_one(dict(document)).inserted_id
        if op < 33:
            documents = [self.document() for _ in range(3)]
            return lambda c: c.insert_many([dict(d) for d in documents], ordered=False)
        if op < 40:
            return lambda c: _update_result(c.update_one(spec, update, upsert=upsert))
        if op < 44:
            return lambda c: _update_result(c.update_many(spec, update, upsert=upsert))
        if op < 46:
            replacement = {k: v for k, v in self.document().items() if k != "_id"}
            return lambda c: _update_result(c.replace_one(spec, replacement, upsert=upsert))
        if op < 52:
            after = self.pick([ReturnDocument.AFTER, ReturnDocument.BEFORE])
            sort = self.pick([None, [("delivery.next_attempt_at", 1)], [("n", -1)]])
            return lambda c: c.find_one_and_update(
                spec, update, sort=sort, upsert=upsert, return_document=after
            )
        if op < 53:
            return lambda c: c.find_one_and_delete(spec)
        if op < 55:
            return lambda c: c.delete_one(spec).deleted_count
        if op < 56:
            return lambda c: c.delete_many(spec).deleted_count
        if op < 75:
            sort = self.pick([None, [("n", 1)], [("delivery.next_attempt_at", -1), ("n", 1)]])
            limit = self.rng.randrange(4)
            return lambda c: list(c.find(spec, sort=sort, limit=limit))
        if op < 85:
            return lambda c: c.find_one(spec, {"tags": 0})
        if op < 95:
            return lambda c: c.count_documents(spec)
        if op < 97:
            field = self.pick(["n", "status", "tags", "user_id"])
            return lambda c: c.create_index([(field, 1)], name=f"by_{field}")
        if self.rng.random() < 0.9:
            field = self.pick(["n", "status", "tags"])
            return lambda c: c.drop_index(f"by_{field}")
        return lambda c: c.drop()  # rarely: the collection is then rebuilt from scratch


def _update_result(result: Any) -> tuple[int, int, Any]:
    return result.matched_count, result.modified_count, result.upserted_id


def _comparable(value: Any) -> str:
    """The repr both stores must agree on; generated ObjectIds differ between them."""

    def scrub(item: Any) -> Any:
        if isinstance(item, ObjectId):
            return "<generated>"
        if isinstance(item, dict):
            return {key: scrub(inner) for key, inner in item.items()}
        if isinstance(item, (list, tuple)):
            return type(item)(scrub(inner) for inner in item)
        return item

    return repr(scrub(value))


def _outcome(step: Callable[[Any], Any], collection: Any) -> str:
    try:
        return _comparable(step(collection))
    except Exception as exc:  # the same error must come out of both
        return f"raised {type(exc).__name__}: {exc}"


def _declare_indexes(collection: Any) -> None:
    collection.create_index([("code", 1)], unique=True)
    collection.create_index([("user_id", 1), ("n", -1)])
    collection.create_index([("delivery.status", 1), ("delivery.next_attempt_at", 1)])
    collection.create_index([("outbox.0", 1)], sparse=True)
    collection.create_index([("outbox.1", 1)])


@pytest.mark.parametrize("seed", range(6))
def test_same_results_as_mongomock_for_a_random_sequence(seed: int) -> None:
    plain: Any = mongomock.MongoClient()["db"]["things"]
    indexed = IndexedMongoClient()["db"]["things"]
    assert isinstance(indexed, IndexedCollection)
    for collection in (plain, indexed):
        _declare_indexes(collection)

    for number, step in enumerate(Scenario(seed).steps(700)):
        expected = _outcome(step, plain)
        assert _outcome(step, indexed) == expected, f"step {number}"
        if number % 50 == 0:
            assert _comparable(list(indexed.find())) == _comparable(list(plain.find()))
    assert _comparable(list(indexed.find())) == _comparable(list(plain.find()))


SIZE = 2000


@pytest.fixture
def notifications() -> Any:
    collection = IndexedMongoClient()["db"]["notifications"]
    collection.create_index([("event_id", 1)], unique=True)
    collection.create_index([("user_id", 1), ("sent_at", -1)])
    collection.insert_many(
        {"_id": f"n{i}", "event_id": f"e{i}", "user_id": f"u{i % 100}", "read": False}
        for i in range(SIZE)
    )
    return collection


def _calls_for(calls: list[int], operation: Callable[[], Any]) -> int:
    calls[0] = 0
    operation()
    return calls[0]


def test_lookups_by_id_and_by_indexed_field_test_only_their_documents(
    notifications: Any, filter_calls: list[int]
) -> None:
    # Only string ids: the _id dict answers exactly, nothing is matched again.
    assert _calls_for(filter_calls, lambda: notifications.find_one({"_id": "n1500"})) == 0
    in_ids = {"_id": {"$in": ["n1", "n2", "nope"]}}
    assert _calls_for(filter_calls, lambda: notifications.update_many(in_ids, {"$set": {}})) == 0
    # With another clause, the one candidate is matched against the whole filter.
    assert _calls_for(filter_calls, lambda: notifications.find_one({"_id": "n9", "read": 0})) == 1
    by_user = _calls_for(filter_calls, lambda: list(notifications.find({"user_id": "u7"})))
    assert by_user == SIZE // 100
    assert (
        _calls_for(filter_calls, lambda: notifications.update_one({"_id": "n3"}, {"$set": {}})) == 0
    )
    assert _calls_for(filter_calls, lambda: notifications.count_documents({"event_id": "e9"})) == 1
    # The unique-index check of an insert looks at the one holder of the value, not all.
    assert _calls_for(filter_calls, lambda: notifications.insert_one({"event_id": "new"})) <= 2
    # The outbox relay's question, once pending events have an index.
    notifications.create_index([("outbox.0", 1)], sparse=True)
    notifications.update_many({"_id": {"$in": ["n5", "n6"]}}, {"$push": {"outbox": {"id": 1}}})
    pending = _calls_for(
        filter_calls, lambda: list(notifications.find({"outbox.0": {"$exists": True}}))
    )
    assert pending == 2
    # An unindexed field is still answered by mongomock's scan: the counter does count.
    assert _calls_for(filter_calls, lambda: list(notifications.find({"read": True}))) == SIZE + 1


def test_plain_mongomock_scans_for_the_same_lookup(filter_calls: list[int]) -> None:
    plain: Any = mongomock.MongoClient()["db"]["notifications"]
    plain.insert_many({"_id": f"n{i}"} for i in range(SIZE))
    assert _calls_for(filter_calls, lambda: plain.find_one({"_id": "n1500"})) > 1000


def test_an_index_declared_after_the_documents_covers_them(filter_calls: list[int]) -> None:
    collection = IndexedMongoClient()["db"]["late"]
    collection.insert_many({"_id": i, "status": "new" if i % 2 else "done"} for i in range(SIZE))
    collection.create_index("status")
    assert _calls_for(filter_calls, lambda: collection.count_documents({"status": "new"})) == (
        SIZE // 2
    )
    assert collection.count_documents({"status": "new"}) == SIZE // 2


def test_changing_an_indexed_field_in_place_moves_the_document() -> None:
    collection = IndexedMongoClient()["db"]["moves"]
    collection.create_index([("delivery.status", 1), ("delivery.next_attempt_at", 1)])
    collection.insert_one({"_id": "a", "delivery": {"status": "pending", "next_attempt_at": 1}})
    claimed = collection.find_one_and_update(
        {"delivery.status": "pending"},
        {"$set": {"delivery.status": "sent"}},
        sort=[("delivery.next_attempt_at", 1)],
        return_document=ReturnDocument.AFTER,
    )
    assert claimed["delivery"]["status"] == "sent"
    assert collection.find_one({"delivery.status": "pending"}) is None
    assert collection.find_one({"delivery.status": "sent"})["_id"] == "a"
    collection.delete_one({"_id": "a"})
    assert collection.find_one({"delivery.status": "sent"}) is None


def test_a_subdocument_update_many_shared_is_followed_like_mongomock() -> None:
    """mongomock's update_many stores one value object in every matched document, so a later
    change through one document shows in the others: the index must not lose them."""
    results = []
    collections: list[Any] = [mongomock.MongoClient()["db"]["a"], IndexedMongoClient()["db"]["a"]]
    for collection in collections:
        _declare_indexes(collection)
        collection.insert_many({"_id": i, "code": f"c{i}", "kind": "x"} for i in range(3))
        collection.update_many({"kind": "x"}, {"$set": {"delivery": {"status": "pending"}}})
        collection.update_one({"_id": 0}, {"$set": {"delivery.status": "sent"}})
        results.append(
            (
                [d["_id"] for d in collection.find({"delivery.status": "sent"})],
                [d["_id"] for d in collection.find({"delivery.status": "pending"})],
            )
        )
    plain, indexed = results
    assert indexed == plain
