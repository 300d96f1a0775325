"""Email addresses in event payloads (shared/events/models.py): checked and normalised as
pydantic's EmailStr does, each distinct address once per process (the check was 9% of the user
service's CPU under placeOrder), an invalid one refused every time."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pydantic import EmailStr, TypeAdapter, ValidationError

from shared.events.models import NotificationRequested, UserRegistered, _checked_email


@pytest.fixture(autouse=True)
def fresh_cache() -> Iterator[None]:
    _checked_email.cache_clear()
    yield
    _checked_email.cache_clear()


def requested(email: str | None) -> NotificationRequested:
    return NotificationRequested(
        user_id="u-1", type="order_update", content="Order o-1 is Placed", email=email
    )


@pytest.mark.parametrize(
    "address",
    ["someone@example.com", "  Some.One@Example.COM ", "Some One <someone@example.com>"],
)
def test_an_address_is_normalised_as_emailstr_does(address: str) -> None:
    assert requested(address).email == TypeAdapter(EmailStr).validate_python(address)


@pytest.mark.parametrize("address", ["not-an-email", "a@b", "someone@example.com\r\nBcc: x@y.z"])
def test_an_invalid_address_is_refused_every_time(address: str) -> None:
    for _ in range(2):
        with pytest.raises(ValidationError, match="not a valid email address"):
            requested(address)
    assert _checked_email.cache_info().currsize == 0


def test_each_distinct_address_is_checked_once() -> None:
    for _ in range(3):
        requested("someone@example.com")
        UserRegistered(user_id="u-1", name="Someone", email="someone@example.com", preferences=[])
    requested("other@example.com")
    requested(None)
    info = _checked_email.cache_info()
    assert (info.misses, info.hits) == (2, 5)
