"""devstack.memory_copy: the in-process store's deep copy gives what copy.deepcopy gives, shares
nothing mutable, and is what mongomock's collections use once the store is created."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import mongomock.collection
from bson import ObjectId

from devstack.memory_copy import tree_copy
from devstack.memory_store import IndexedMongoClient


class Point:
    def __init__(self, x: int) -> None:
        self.x = x

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Point) and other.x == self.x

    __hash__ = None  # type: ignore[assignment]


def document() -> dict[str, Any]:
    return {
        "_id": ObjectId(),
        "user_id": "u1",
        "at": datetime(2026, 12, 1, tzinfo=UTC),
        "total": Decimal("12.50"),
        "products": [{"productId": "7", "quantity": 2, "tags": ["a", "b"]}],
        "outbox": [{"id": "e1", "value": b"{}"}],
        "pair": ("x", ["y"]),
        "point": Point(3),
        "seen": {1, 2},
    }


def test_a_tree_copy_equals_a_deep_copy() -> None:
    original = document()
    assert tree_copy(original) == copy.deepcopy(original) == original


def test_a_tree_copy_shares_no_container_with_the_original() -> None:
    original = document()
    copied = tree_copy(original)
    copied["products"][0]["tags"].append("c")
    copied["outbox"].clear()
    copied["pair"][1].append("z")
    copied["point"].x = 4
    copied["seen"].add(3)
    assert original == document() | {"_id": original["_id"]}


def test_the_store_copies_documents_with_it_and_keeps_them_apart_from_the_caller() -> None:
    collection = IndexedMongoClient(tz_aware=True)["db"]["orders"]
    assert mongomock.collection.copy.deepcopy is tree_copy
    mine: dict[str, Any] = {"_id": "o1", "products": [{"productId": "7"}]}
    collection.insert_one(mine)
    mine["products"].append({"productId": "8"})
    stored = collection.find_one({"_id": "o1"})
    assert stored == {"_id": "o1", "products": [{"productId": "7"}]}
    stored["products"].clear()
    result = collection.update_one({"_id": "o1"}, {"$set": {"status": "Placed"}})
    assert result.modified_count == 1
    assert collection.update_one({"_id": "o1"}, {"$set": {"status": "Placed"}}).modified_count == 0
    assert collection.find_one({"_id": "o1"})["products"] == [{"productId": "7"}]


def test_datetimes_become_what_mongomock_makes_of_them() -> None:
    from collections import OrderedDict

    from bson import Timestamp

    from devstack.memory_copy import _mongomock_patch_datetimes, with_mongo_datetimes

    value: dict[str, Any] = {
        "at": datetime(2026, 12, 1, 10, 30, 5, 123456, tzinfo=UTC),
        "naive": datetime(2026, 12, 1, 10, 30, 5, 999999),
        "nested": [{"when": datetime(2026, 1, 1, tzinfo=UTC)}, ("a", 1)],
        "ordered": OrderedDict(b=datetime(2026, 2, 2, 0, 0, 0, 1500, tzinfo=UTC)),
        "stamp": Timestamp(5, 1),
        "text": "x",
    }
    converted = with_mongo_datetimes(value)
    assert converted == _mongomock_patch_datetimes(value)
    assert converted["at"] == datetime(2026, 12, 1, 10, 30, 5, 123000)
    assert converted["naive"].microsecond == 999000
    assert type(converted["ordered"]) is OrderedDict
    assert converted["nested"][1] == ["a", 1]
    converted["nested"][0]["when"] = None
    assert value["nested"][0]["when"] is not None
