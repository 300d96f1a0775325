"""The overload phase of `make bench` tallies each answer rightly: an order id is accepted, a
SERVICE_UNAVAILABLE refusal (the gateway's own 503, or a service's passed on as the field's
error) is refused, and anything else is an error."""

from __future__ import annotations

import orjson
import pytest

from bench.open_loop import classify


def answer(body: object) -> bytes:
    return orjson.dumps(body)


def unavailable(message: str = "busy") -> dict[str, object]:
    return {"message": message, "extensions": {"code": "SERVICE_UNAVAILABLE"}}


def test_an_order_id_is_accepted() -> None:
    assert classify(200, answer({"data": {"placeOrder": {"id": "o-1"}}})) == ("accepted", "o-1")


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (503, {"errors": [unavailable()]}),
        (200, {"data": None, "errors": [unavailable("The order service is unavailable.")]}),
    ],
    ids=["gateway", "service"],
)
def test_service_unavailable_is_refused(status: int, body: object) -> None:
    assert classify(status, answer(body)) == ("refused", "")


@pytest.mark.parametrize(
    ("status", "content"),
    [
        (200, answer({"data": None, "errors": [{"message": "x", "extensions": {"code": "X"}}]})),
        (200, answer({"data": None, "errors": [unavailable(), {"message": "no code"}]})),
        (502, b"Bad Gateway"),
        (200, answer(["not", "an", "answer"])),
        (200, answer({"data": {"placeOrder": None}})),
    ],
    ids=["other code", "mixed", "not json", "not an object", "no id"],
)
def test_anything_else_is_an_error(status: int, content: bytes) -> None:
    outcome, detail = classify(status, content)
    assert outcome == "error"
    assert detail.startswith(f"HTTP {status}")
