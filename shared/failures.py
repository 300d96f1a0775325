"""The fleet's failure taxonomy for consumed messages: transient (wait and retry) or permanent
(dead-letter at once).

A failure is permanent only when the message itself can never succeed: it cannot be decoded,
it is invalid, or a service refused it for good (a client-fault `AppError`, a document or record
too large, a `PermanentFailure` raised by a handler). Everything else, including an exception
nobody classified, is transient: a database, SMTP server, catalog or broker that is down comes
back, and waiting (up to the retry horizon) loses nothing, while dead-lettering an outage's
traffic would.
"""

from __future__ import annotations

from enum import StrEnum

import httpx
from aiokafka.errors import MessageSizeTooLargeError, RecordTooLargeError
from pydantic import ValidationError
from pymongo.errors import (
    DocumentTooLarge,
    DuplicateKeyError,
    InvalidDocument,
    WriteError,
)

from shared.errors import (
    AppError,
    BadUserInput,
    Conflict,
    Forbidden,
    NotFound,
    Unauthenticated,
)
from shared.events.envelope import EnvelopeError
from shared.publisher import MessageTooLarge

_RETRYABLE_LABEL = "RetryableWriteError"
# HTTP answers that say "later", not "never".
_RETRYABLE_STATUSES = frozenset({408, 425, 429})


class Failure(StrEnum):
    """What to do with a message whose handler raised."""

    TRANSIENT = "transient"
    PERMANENT = "permanent"


class TransientFailure(Exception):
    """Raised by a handler: a dependency is unavailable; deliver this message again later."""


class PermanentFailure(Exception):
    """Raised by a handler: this message can never succeed; dead-letter it now."""


_PERMANENT_APP_ERRORS: tuple[type[AppError], ...] = (
    BadUserInput,
    NotFound,
    Conflict,
    Forbidden,
    Unauthenticated,
)
_PERMANENT_TYPES: tuple[type[BaseException], ...] = (
    PermanentFailure,
    EnvelopeError,
    ValidationError,
    *_PERMANENT_APP_ERRORS,
    DocumentTooLarge,
    InvalidDocument,
    MessageSizeTooLargeError,
    RecordTooLargeError,
    # Over KAFKA_MAX_MESSAGE_BYTES: the same message is as large the next time.
    MessageTooLarge,
)


def classify(error: BaseException) -> Failure:
    """Transient or permanent (see the module docstring); unknown errors are transient."""
    if isinstance(error, TransientFailure):
        return Failure.TRANSIENT
    if isinstance(error, _PERMANENT_TYPES):
        return Failure.PERMANENT
    # A write the server refused for the document's sake (validation, size); a duplicate key
    # is a race between two upserts that a retry resolves.
    if (
        isinstance(error, WriteError)
        and not isinstance(error, DuplicateKeyError)
        and not error.has_error_label(_RETRYABLE_LABEL)
    ):
        return Failure.PERMANENT
    if isinstance(error, httpx.HTTPStatusError):
        status = error.response.status_code
        if 400 <= status < 500 and status not in _RETRYABLE_STATUSES:
            return Failure.PERMANENT
    return Failure.TRANSIENT
