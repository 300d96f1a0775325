import uuid

import orjson
import pytest
from pydantic import ValidationError

from shared.events import EVENT_TYPES, Envelope, EnvelopeError, UserRegistered


def test_envelope_round_trips_through_bytes() -> None:
    envelope = Envelope(
        type="UserRegistered", source="user_service", correlation_id="c-1", data={"a": 1}
    )
    parsed = Envelope.from_bytes(envelope.to_bytes())
    assert parsed == envelope
    assert isinstance(parsed.id, uuid.UUID)
    assert parsed.occurred_at.utcoffset() is not None


def test_envelope_carries_every_field_of_the_contract() -> None:
    raw = orjson.loads(Envelope(type="T", source="s", correlation_id="c", data={}).to_bytes())
    assert set(raw) == {"id", "type", "version", "occurred_at", "source", "correlation_id", "data"}


@pytest.mark.parametrize(
    "raw",
    [
        None,
        b"",
        b"not json",
        b"[]",
        b'{"type": "T"}',
        orjson.dumps({"id": "nope", "type": "T", "source": "s", "correlation_id": "c", "data": {}}),
    ],
)
def test_anything_else_is_an_envelope_error(raw: bytes | None) -> None:
    with pytest.raises(EnvelopeError):
        Envelope.from_bytes(raw)


def test_every_event_type_is_registered_once() -> None:
    assert EVENT_TYPES["UserRegistered"] is UserRegistered
    assert len({cls.topic for cls in EVENT_TYPES.values()}) == len(EVENT_TYPES)


def test_event_key_is_the_user_id() -> None:
    event = UserRegistered(
        user_id="u-42", name="Ada", email="ada@example.com", preferences=["promotions"]
    )
    assert event.key == "u-42"


def test_event_payload_is_validated() -> None:
    with pytest.raises(ValidationError):
        UserRegistered(user_id="u", name="Ada", email="not-an-email", preferences=[])
    with pytest.raises(ValidationError):
        UserRegistered(user_id="u", name="Ada", email="a@b.co", preferences=["spam"])  # type: ignore[list-item]
