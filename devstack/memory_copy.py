"""Faster document walks for the in-process store. mongomock copies every document it stores,
returns and updates with `copy.deepcopy` (a deep copy per updated document, for the snapshot
that tells whether it changed), and rewrites every stored document and filter to MongoDB's
datetimes (naive UTC, milliseconds) with a generator per dict; with the fleet's documents these
two walks were the largest part of the store's time.

Documents are trees of dicts and lists over immutable values (str, numbers, ObjectIds, ...):
those are walked by a plain recursion, and anything else (a datetime, an OrderedDict, a set, a
class) still goes through mongomock's or the standard library's own function, so every result
is the same. `install` puts them into mongomock's modules only, never into `copy`.
"""

from __future__ import annotations

import copy
import datetime
import decimal
import uuid
from types import SimpleNamespace
from typing import Any

import mongomock.collection
import mongomock.helpers
from bson import Decimal128, Int64, ObjectId, Timestamp

_IMMUTABLE = frozenset(
    {
        str,
        int,
        float,
        bool,
        type(None),
        bytes,
        datetime.datetime,
        datetime.date,
        datetime.time,
        datetime.timedelta,
        decimal.Decimal,
        uuid.UUID,
        ObjectId,
        Decimal128,
        Int64,
        Timestamp,
    }
)


def tree_copy(value: Any, memo: dict[int, Any] | None = None) -> Any:
    """A deep copy of `value`: new dicts and lists all the way down, immutable leaves shared."""
    kind = type(value)
    if kind is dict:
        return {key: tree_copy(item) for key, item in value.items()}
    if kind is list:
        return [tree_copy(item) for item in value]
    if kind in _IMMUTABLE:
        return value
    return copy.deepcopy(value, memo)


_DATETIMES = frozenset({datetime.datetime, Timestamp})
_mongomock_patch_datetimes = mongomock.helpers.patch_datetime_awareness_in_document


def with_mongo_datetimes(value: Any) -> Any:
    """mongomock's `patch_datetime_awareness_in_document`: `value` with every datetime as
    MongoDB keeps it (naive UTC, whole milliseconds), dicts and lists rebuilt."""
    kind = type(value)
    if kind is dict:
        return {key: with_mongo_datetimes(item) for key, item in value.items()}
    if kind is list or kind is tuple:
        return [with_mongo_datetimes(item) for item in value]
    if kind in _IMMUTABLE and kind not in _DATETIMES:
        return value
    return _mongomock_patch_datetimes(value)


def install() -> None:
    """Make mongomock copy documents with `tree_copy` and convert their datetimes with
    `with_mongo_datetimes` (idempotent)."""
    mongomock.collection.copy = SimpleNamespace(  # type: ignore[assignment]
        deepcopy=tree_copy, copy=copy.copy
    )
    mongomock.helpers.patch_datetime_awareness_in_document = with_mongo_datetimes
