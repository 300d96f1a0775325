"""The failure taxonomy: only what can never succeed is permanent (dead-lettered at once)."""

from __future__ import annotations

import httpx
import pytest
from aiokafka.errors import KafkaConnectionError, MessageSizeTooLargeError
from pydantic import BaseModel, ValidationError
from pymongo.errors import (
    AutoReconnect,
    DocumentTooLarge,
    DuplicateKeyError,
    NetworkTimeout,
    ServerSelectionTimeoutError,
    WriteError,
)

from shared.catalog import CatalogUnavailable
from shared.errors import BadUserInput, NotFound, RateLimited, ServiceUnavailable
from shared.events.envelope import EnvelopeError
from shared.failures import Failure, PermanentFailure, TransientFailure, classify
from shared.publisher import MessageTooLarge


class _Strict(BaseModel):
    count: int


def _validation_error() -> ValidationError:
    try:
        _Strict.model_validate({"count": "many"})
    except ValidationError as exc:
        return exc
    raise AssertionError("expected a validation error")


def _status_error(status: int) -> httpx.HTTPStatusError:
    request = httpx.Request("GET", "http://catalog.test/products")
    return httpx.HTTPStatusError(
        "answer", request=request, response=httpx.Response(status, request=request)
    )


@pytest.mark.parametrize(
    "error",
    [
        AutoReconnect("primary stepped down"),
        NetworkTimeout("timed out"),
        ServerSelectionTimeoutError("no servers"),
        DuplicateKeyError("E11000 upsert race"),
        KafkaConnectionError("broker down"),
        ConnectionRefusedError("smtp down"),
        TimeoutError(),
        ServiceUnavailable(),
        CatalogUnavailable(),
        RateLimited(),
        TransientFailure("later"),
        _status_error(503),
        _status_error(429),
        httpx.ConnectError("no route"),
        RuntimeError("nobody classified this"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_outages_and_unknown_errors_are_transient(error: BaseException) -> None:
    assert classify(error) is Failure.TRANSIENT


@pytest.mark.parametrize(
    "error",
    [
        PermanentFailure("refused"),
        EnvelopeError("not json"),
        _validation_error(),
        BadUserInput("unknown product"),
        NotFound(),
        DocumentTooLarge("over 16 MB"),
        WriteError("document failed validation", code=121),
        MessageSizeTooLargeError(),
        MessageTooLarge("a 600000-byte message exceeds KAFKA_MAX_MESSAGE_BYTES"),
        _status_error(404),
    ],
    ids=lambda e: type(e).__name__,
)
def test_what_can_never_succeed_is_permanent(error: BaseException) -> None:
    assert classify(error) is Failure.PERMANENT
