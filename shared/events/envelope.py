"""The JSON envelope every message of the fleet travels in."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

ENVELOPE_VERSION = 1


class EnvelopeError(ValueError):
    """The bytes on a topic are not a valid envelope (a poison message)."""


def _now() -> datetime:
    return datetime.now(UTC)


class Envelope(BaseModel):
    """`id` is the idempotency key; `data` is the payload of the event named by `type`."""

    model_config = ConfigDict(frozen=True)

    id: uuid.UUID = Field(default_factory=uuid.uuid4)
    type: str = Field(min_length=1)
    version: int = ENVELOPE_VERSION
    occurred_at: datetime = Field(default_factory=_now)
    source: str = Field(min_length=1)
    correlation_id: str = Field(min_length=1)
    data: dict[str, Any]

    def to_bytes(self) -> bytes:
        """Serialize for the wire."""
        return orjson.dumps(self.model_dump(mode="json"))

    @classmethod
    def from_bytes(cls, raw: bytes | None) -> Envelope:
        """Parse bytes from the wire; anything that is not an envelope raises EnvelopeError."""
        if raw is None:
            raise EnvelopeError("the message has no value")
        try:
            return cls.model_validate(orjson.loads(raw))
        except (orjson.JSONDecodeError, ValidationError) as exc:
            raise EnvelopeError(f"the message is not a valid envelope: {exc}") from exc
