"""Signed links in emails: the tracking pixel, unsubscribe, email verification, password reset.

One scheme for all of them: a JWT (PyJWT, HS256) whose `aud` names the link's purpose, with an
expiry, signed with a key derived from JWT_SECRET for links only. A token of one purpose never
passes as another (the audience differs) nor as an access token (those carry no `aud`, and
PyJWT refuses a token with an audience where none is expected), and an access token never
passes as a link (the audience is required). A token is URL-safe (base64url and dots).
Single use, where a purpose needs it, is the caller's rule: the token carries an id (`jti`)
that the owner of the link stores and clears once used.
"""

from __future__ import annotations

import hashlib
import hmac
import time
import uuid
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import jwt

ALGORITHM = "HS256"
_KEY_PURPOSE = b"fleet/signed-links/v1"
_AUDIENCE_PREFIX = "fleet:"
_RESERVED = frozenset({"aud", "sub", "exp", "iat", "jti"})


class LinkPurpose(StrEnum):
    """What a link does; each is its own audience."""

    PIXEL = "pixel"
    UNSUBSCRIBE = "unsubscribe"
    VERIFY_EMAIL = "verify-email"
    RESET_PASSWORD = "reset-password"  # noqa: S105 - a purpose, not a password

    @property
    def audience(self) -> str:
        """The `aud` claim of this purpose's tokens."""
        return f"{_AUDIENCE_PREFIX}{self.value}"


@dataclass(frozen=True, slots=True)
class LinkClaims:
    """What a valid link token says."""

    subject: str
    token_id: str
    expires_at: float
    data: dict[str, str]


class LinkSigner:
    """Signs and checks link tokens with the links key derived from JWT_SECRET."""

    def __init__(self, jwt_secret: str) -> None:
        self._key = hmac.new(jwt_secret.encode(), _KEY_PURPOSE, hashlib.sha256).digest()

    def sign(
        self,
        purpose: LinkPurpose,
        subject: str,
        *,
        ttl_seconds: float,
        token_id: str | None = None,
        **data: str,
    ) -> str:
        """A token for `purpose` naming `subject` (a user id), valid `ttl_seconds`."""
        if _RESERVED & data.keys():
            raise ValueError(f"link data must not use the reserved claims {sorted(_RESERVED)}")
        now = int(time.time())
        claims: dict[str, Any] = {
            "aud": purpose.audience,
            "sub": subject,
            "iat": now,
            "exp": now + int(ttl_seconds),
            "jti": token_id or uuid.uuid4().hex,
            **data,
        }
        return jwt.encode(claims, self._key, algorithm=ALGORITHM)

    def verify(self, purpose: LinkPurpose, token: str) -> LinkClaims | None:
        """The claims of a valid, unexpired token of this purpose; None for anything else."""
        try:
            claims = jwt.decode(
                token,
                self._key,
                algorithms=[ALGORITHM],
                audience=purpose.audience,
                options={"require": ["aud", "sub", "exp", "jti"]},
            )
        except jwt.PyJWTError:
            return None
        subject, token_id = claims.get("sub"), claims.get("jti")
        if not isinstance(subject, str) or not subject or not isinstance(token_id, str):
            return None
        data = {k: v for k, v in claims.items() if k not in _RESERVED and isinstance(v, str)}
        return LinkClaims(subject, token_id, float(claims["exp"]), data)


def link_url(public_base_url: str, path: str, token: str) -> str:
    """`{PUBLIC_BASE_URL}/{path}/{token}`: where an email's link points (the gateway)."""
    return f"{public_base_url.rstrip('/')}/{path.strip('/')}/{token}"
