"""The caller of a GraphQL request: the token is verified here, before any downstream call."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from shared.auth import Caller, bearer_token, verify_token
from shared.settings import ServiceSettings


@dataclass(frozen=True, slots=True)
class Credentials:
    """A verified caller and the token that proved it (forwarded to the services)."""

    caller: Caller
    token: str

    @property
    def authorization(self) -> str:
        """The Authorization header value to forward downstream."""
        return f"Bearer {self.token}"


def authenticate(authorization: str | None, settings: ServiceSettings) -> Credentials:
    """Verify `Bearer <token>` (or a bare token); raise Unauthenticated if it is not valid."""
    token = bearer_token(authorization)
    caller = verify_token(
        token, secret=settings.jwt_secret.get_secret_value(), issuer=settings.jwt_issuer
    )
    assert token is not None  # verify_token rejects a missing token
    return Credentials(caller=caller, token=token)


# Where a WebSocket client may put its token in the connection_init payload.
_CONNECTION_TOKEN_KEYS = ("Authorization", "authorization", "token")


def authorization_from_connection_params(params: dict[str, Any] | None) -> str | None:
    """The token of a connection_init payload: `{"Authorization": "Bearer ..."}` (any case)
    or `{"token": "..."}`; None when there is none."""
    for key in _CONNECTION_TOKEN_KEYS:
        value = (params or {}).get(key)
        if isinstance(value, str) and value.strip():
            return value
    return None
