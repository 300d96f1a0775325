"""What an in-process collection's hash index files a document under (devstack.memory_store).

A lookup must never miss a document mongomock's `filter_applies` would match, so a document is
filed under a value only when Python's hashing decides equality exactly as that matcher does:
str, int, float, bool and ObjectId values, and subclasses keeping the base's `==` and hash
(StrEnum, IntEnum), reached through subdocuments and list positions (`outbox.0`) as mongomock's
`iter_key_candidates` reaches them. A list on the path (its elements match one by one) or at
the end, a subdocument, a datetime, NaN or anything else makes the document _IRREGULAR: a
candidate of every lookup on that field. A None value is present (`$exists`) but equal to no
lookup key; a missing one is not filed at all.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from bson import ObjectId

_EXACT_KEY_TYPES = frozenset({str, int, bool, ObjectId})


class _Filing:
    """How a document is filed when not under a lookup key."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


# Any lookup on the field must consider the document.
_IRREGULAR = _Filing("irregular")
# The value is None: it exists, but equals no lookup key.
_NULL = _Filing("null")
# The path leads nowhere: not filed at all.
_ABSENT = _Filing("absent")


def lookup_key(value: Any) -> Any:
    """`value` as a dict key that is equal (and hashes equal) to exactly the values mongomock
    matches it with, or None when hashing cannot decide that."""
    kind = type(value)
    if kind in _EXACT_KEY_TYPES:
        return value
    if kind is float:
        return None if math.isnan(value) else value
    # StrEnum and IntEnum members compare and hash like their values.
    if isinstance(value, str) and kind.__eq__ is str.__eq__ and kind.__hash__ is str.__hash__:
        return str.__str__(value)
    if isinstance(value, int) and kind.__eq__ is int.__eq__ and kind.__hash__ is int.__hash__:
        return int.__int__(value)
    return None


def _resolve(document: Any, parts: list[str]) -> tuple[Any, list[int]]:
    """Under what a document is filed for a path, following mongomock's `iter_key_candidates`
    (a lookup key, _IRREGULAR, _NULL or _ABSENT), and the id() of each subdocument or list
    the path went through."""
    value = document
    containers: list[int] = []
    for depth, part in enumerate(parts):
        if isinstance(value, list):
            position = _position(part)
            if position is None or position < -len(value):
                return _IRREGULAR, containers  # elements matched one by one, or an error
            if position >= len(value):
                return _ABSENT, containers
            containers.append(id(value))
            value = value[position]
        elif isinstance(value, dict):
            if depth:
                containers.append(id(value))
            value = value.get(part, _ABSENT)
        else:
            return _ABSENT, containers
    if value is _ABSENT:
        return _ABSENT, containers
    if value is None:
        return _NULL, containers
    if isinstance(value, (list, tuple)):
        return _IRREGULAR, containers
    key = lookup_key(value)
    return (_IRREGULAR if key is None else key), containers


def _position(part: str) -> int | None:
    try:
        return int(part)  # as mongomock reads a path part on a list
    except ValueError:
        return None


def wanted_keys(condition: Any) -> list[Any] | None:
    """The lookup keys a field's condition requires one of, or None if it requires none."""
    if isinstance(condition, dict):
        if not condition or not all(str(name).startswith("$") for name in condition):
            return None
        if "$eq" in condition:
            return _keys_of([condition["$eq"]])
        if isinstance(condition.get("$in"), (list, tuple)):
            return _keys_of(condition["$in"])
        return None
    return _keys_of([condition])


def _keys_of(values: Iterable[Any]) -> list[Any] | None:
    keys = [lookup_key(value) for value in values]
    return None if any(key is None for key in keys) else keys


def _requires_presence(condition: Any) -> bool:
    """Whether the condition is `{"$exists": true, ...}` (mongomock takes any truthy value)."""
    return (
        isinstance(condition, dict)
        and "$exists" in condition
        and all(str(name).startswith("$") for name in condition)
        and bool(condition["$exists"])
    )


class _Holders(set[Any]):
    """The keys of the documents that share one subdocument."""


class FieldIndex:
    """Keys of the documents by their value at one field path.

    mongomock's update_many puts one and the same `$set`/`$push` value object into every
    document it matches, so changing one document in place can change another's value
    unseen: a document whose path goes through a subdocument (or list) another document also
    holds is filed as _IRREGULAR (always a candidate).
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._parts = path.split(".")
        self._keys_by_value: dict[Any, set[Any]] = {}
        self._irregular: set[Any] = set()
        self._filed_as: dict[Any, Any] = {}  # key -> lookup key, _IRREGULAR or _NULL
        self._subdocuments: dict[Any, tuple[int, ...]] = {}
        self._holders: dict[int, Any] = {}  # id() of a subdocument -> its key, or _Holders

    def file(self, key: Any, document: Any) -> None:
        """(Re)file the document stored under `key`."""
        self.remove(key)
        value, subdocuments = _resolve(document, self._parts)
        if subdocuments:
            self._subdocuments[key] = tuple(subdocuments)
            for subdocument in subdocuments:
                if self._hold(subdocument, key):
                    value = _IRREGULAR
        self._put(key, value)

    def remove(self, key: Any) -> None:
        """Forget the document stored under `key`."""
        self._take(key)
        for subdocument in self._subdocuments.pop(key, ()):
            holders = self._holders.get(subdocument)
            if isinstance(holders, _Holders):
                holders.discard(key)
                if not holders:
                    del self._holders[subdocument]
            elif subdocument in self._holders and holders == key:
                del self._holders[subdocument]

    def keys_for(self, condition: Any) -> set[Any] | None:
        """Every document that may match a field's condition, or None if it needs a scan."""
        wanted = wanted_keys(condition)
        if wanted is not None:
            found = set(self._irregular)
            for value in wanted:
                found.update(self._keys_by_value.get(value, ()))
            return found
        if _requires_presence(condition):
            return set(self._filed_as)
        return None

    def _hold(self, subdocument: int, key: Any) -> bool:
        """Note that `key`'s path goes through `subdocument`; True if another's does too."""
        if subdocument not in self._holders:
            self._holders[subdocument] = key
            return False
        holders = self._holders[subdocument]
        if not isinstance(holders, _Holders):
            # The others in a _Holders were made irregular when they joined (or on refiling).
            self._take(holders)
            self._put(holders, _IRREGULAR)
            holders = self._holders[subdocument] = _Holders([holders])
        holders.add(key)
        return True

    def _put(self, key: Any, value: Any) -> None:
        if value is _ABSENT:
            return
        self._filed_as[key] = value
        if value is _IRREGULAR:
            self._irregular.add(key)
        elif value is not _NULL:
            self._keys_by_value.setdefault(value, set()).add(key)

    def _take(self, key: Any) -> None:
        value = self._filed_as.pop(key, _ABSENT)
        if value is _IRREGULAR:
            self._irregular.discard(key)
        elif value is not _ABSENT and value is not _NULL:
            keys = self._keys_by_value[value]
            keys.discard(key)
            if not keys:
                del self._keys_by_value[value]
