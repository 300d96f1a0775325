"""The one error vocabulary of the fleet, mapped once to HTTP statuses and GraphQL codes."""

from __future__ import annotations

from enum import StrEnum
from typing import ClassVar


class ErrorCode(StrEnum):
    """The `extensions.code` values of the public API (docs/contract.md section 4)."""

    UNAUTHENTICATED = "UNAUTHENTICATED"
    FORBIDDEN = "FORBIDDEN"
    BAD_USER_INPUT = "BAD_USER_INPUT"
    NOT_FOUND = "NOT_FOUND"
    CONFLICT = "CONFLICT"
    RATE_LIMITED = "RATE_LIMITED"
    SERVICE_UNAVAILABLE = "SERVICE_UNAVAILABLE"
    INTERNAL_SERVER_ERROR = "INTERNAL_SERVER_ERROR"
    # Apollo's automatic persisted queries (the gateway only): the client sends the document.
    PERSISTED_QUERY_NOT_FOUND = "PERSISTED_QUERY_NOT_FOUND"
    PERSISTED_QUERY_NOT_SUPPORTED = "PERSISTED_QUERY_NOT_SUPPORTED"


HTTP_STATUS: dict[ErrorCode, int] = {
    ErrorCode.UNAUTHENTICATED: 401,
    ErrorCode.FORBIDDEN: 403,
    ErrorCode.BAD_USER_INPUT: 422,
    ErrorCode.NOT_FOUND: 404,
    ErrorCode.CONFLICT: 409,
    ErrorCode.RATE_LIMITED: 429,
    ErrorCode.SERVICE_UNAVAILABLE: 503,
    ErrorCode.INTERNAL_SERVER_ERROR: 500,
    ErrorCode.PERSISTED_QUERY_NOT_FOUND: 404,
    ErrorCode.PERSISTED_QUERY_NOT_SUPPORTED: 400,
}

# Codes only the gateway's GraphQL transport answers (persisted queries), never a service: a
# service's bare status is not read as one of them.
TRANSPORT_CODES = frozenset(
    {ErrorCode.PERSISTED_QUERY_NOT_FOUND, ErrorCode.PERSISTED_QUERY_NOT_SUPPORTED}
)
# The code a bare HTTP status stands for (a framework's refusal, a service's answer without
# the error body).
CODE_FOR_STATUS = {
    status: code for code, status in HTTP_STATUS.items() if code not in TRANSPORT_CODES
}


class AppError(Exception):
    """A failure the caller should see: a code from the contract and one clear sentence."""

    code: ClassVar[ErrorCode] = ErrorCode.INTERNAL_SERVER_ERROR
    default_message: ClassVar[str] = "Something went wrong on our side."

    def __init__(self, message: str | None = None) -> None:
        self.message = message or self.default_message
        super().__init__(self.message)

    @property
    def http_status(self) -> int:
        """The HTTP status this error answers with."""
        return HTTP_STATUS[self.code]

    def to_body(self) -> dict[str, dict[str, str]]:
        """The JSON body every service answers an error with."""
        return {"error": {"code": self.code.value, "message": self.message}}

    @staticmethod
    def from_code(code: str, message: str) -> AppError:
        """Rebuild an error received from another service (unknown codes become internal)."""
        cls = _BY_CODE.get(code, InternalError)
        return cls(message)


class Unauthenticated(AppError):
    code = ErrorCode.UNAUTHENTICATED
    default_message = "A valid token is required."


class Forbidden(AppError):
    code = ErrorCode.FORBIDDEN
    default_message = "You are not allowed to do that."


class BadUserInput(AppError):
    code = ErrorCode.BAD_USER_INPUT
    default_message = "The input is not valid."


class NotFound(AppError):
    code = ErrorCode.NOT_FOUND
    default_message = "Nothing was found."


class Conflict(AppError):
    code = ErrorCode.CONFLICT
    default_message = "That conflicts with the current state."


class RateLimited(AppError):
    code = ErrorCode.RATE_LIMITED
    default_message = "Too many attempts; try again later."


class ServiceUnavailable(AppError):
    code = ErrorCode.SERVICE_UNAVAILABLE
    default_message = "A service is unavailable; try again shortly."


class InternalError(AppError):
    code = ErrorCode.INTERNAL_SERVER_ERROR


class PersistedQueryNotFound(AppError):
    """A persisted-query hash the gateway does not know. The message is Apollo's exact text,
    which Apollo's clients (and older ones that ignore the code) match to send the document."""

    code = ErrorCode.PERSISTED_QUERY_NOT_FOUND
    default_message = "PersistedQueryNotFound"


class PersistedQueryNotSupported(AppError):
    """A persisted-query version other than Apollo's version 1 (Apollo's exact text)."""

    code = ErrorCode.PERSISTED_QUERY_NOT_SUPPORTED
    default_message = "PersistedQueryNotSupported"


_BY_CODE: dict[str, type[AppError]] = {
    cls.code.value: cls
    for cls in (
        Unauthenticated,
        Forbidden,
        BadUserInput,
        NotFound,
        Conflict,
        RateLimited,
        ServiceUnavailable,
        InternalError,
        PersistedQueryNotFound,
        PersistedQueryNotSupported,
    )
}
