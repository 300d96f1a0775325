"""The one rule every text field follows: no control characters (C0, DEL, C1: a NUL byte in a
product id, a line break in a name). The gateway applies it to every string argument, literal
or variable, before any resolver runs (graphql_gateway/plain_text.py)."""

from __future__ import annotations

import re
from typing import Any

_CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f-\x9f]")
CONTROL_CHARACTERS_MESSAGE = "Text must not contain control characters."


def has_control_characters(text: str) -> bool:
    """Whether a text holds a control character (tab and line breaks included)."""
    return _CONTROL_CHARACTERS.search(text) is not None


def holds_control_characters(value: Any) -> bool:
    """Whether any text inside a JSON-like value (strings, lists, objects' keys and values)
    holds a control character."""
    if isinstance(value, str):
        return has_control_characters(value)
    if isinstance(value, dict):
        return any(
            holds_control_characters(key) or holds_control_characters(item)
            for key, item in value.items()
        )
    if isinstance(value, list | tuple):
        return any(holds_control_characters(item) for item in value)
    return False
