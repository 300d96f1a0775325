"""Read-tracking tokens: an HMAC-SHA256 signature over (notification id, user id).

The key is derived from JWT_SECRET for this one purpose, so a tracking token can never pass
as anything else and nobody without the secret can mark another user's notification read.
Token: `<base64url(json [notification_id, user_id])>.<base64url(signature)>`, safe in a URL path.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from dataclasses import dataclass

_KEY_PURPOSE = b"fleet/notification-tracking/v1"
_SEPARATOR = "."
_FIELDS = 2  # notification id, user id


@dataclass(frozen=True, slots=True)
class TrackedRead:
    """What a valid token names."""

    notification_id: str
    user_id: str


def tracking_key(jwt_secret: str) -> bytes:
    """The signing key of tracking tokens, derived from the JWT secret."""
    return hmac.new(jwt_secret.encode(), _KEY_PURPOSE, hashlib.sha256).digest()


def _b64encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _signature(key: bytes, payload: str) -> str:
    return _b64encode(hmac.new(key, payload.encode("ascii"), hashlib.sha256).digest())


def sign(key: bytes, notification_id: str, user_id: str) -> str:
    """A token naming the notification and its owner."""
    payload = _b64encode(json.dumps([notification_id, user_id], separators=(",", ":")).encode())
    return f"{payload}{_SEPARATOR}{_signature(key, payload)}"


def verify(key: bytes, token: str) -> TrackedRead | None:
    """What the token names, or None when it is malformed or not signed with this key."""
    payload, separator, signature = token.rpartition(_SEPARATOR)
    if not separator or not payload.isascii() or not signature.isascii():
        return None
    if not hmac.compare_digest(_signature(key, payload), signature):
        return None
    try:
        values = json.loads(_b64decode(payload))
    except (binascii.Error, ValueError):
        return None
    if (
        not isinstance(values, list)
        or len(values) != _FIELDS
        or not all(isinstance(v, str) and v for v in values)
    ):
        return None
    return TrackedRead(notification_id=values[0], user_id=values[1])
