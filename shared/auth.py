"""Tokens (PyJWT, HS256) and passwords (Argon2 via pwdlib), and the caller they describe."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import anyio
import anyio.to_thread
import jwt
from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher

from shared.errors import ServiceUnavailable, Unauthenticated

T = TypeVar("T")

ALGORITHM = "HS256"
ROLE_CUSTOMER = "customer"
ROLE_ADMIN = "admin"
_REQUIRED_CLAIMS = ["sub", "email", "roles", "iat", "exp", "iss"]


@dataclass(frozen=True, slots=True)
class Caller:
    """Who is calling, as the token says."""

    user_id: str
    email: str
    roles: tuple[str, ...]
    # Epoch seconds the token stops being valid (None: not from a token, as in tests).
    expires_at: float | None = None
    # The session the token belongs to (`sid`): revoking it ends the token before it expires.
    # None for tokens made without one (tests, tokens issued before sessions existed).
    session_id: str | None = None

    @property
    def is_admin(self) -> bool:
        """Whether the token grants the admin role."""
        return ROLE_ADMIN in self.roles


def issue_token(
    *,
    user_id: str,
    email: str,
    roles: list[str],
    secret: str,
    issuer: str,
    ttl_seconds: int,
    session_id: str | None = None,
) -> str:
    """Sign an access token for a user (of a session, when `session_id` is given)."""
    now = int(time.time())
    claims: dict[str, Any] = {
        "sub": user_id,
        "email": email,
        "roles": roles,
        "iat": now,
        "exp": now + ttl_seconds,
        "iss": issuer,
    }
    if session_id is not None:
        claims["sid"] = session_id
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def bearer_token(header_value: str | None) -> str | None:
    """The token from an Authorization header (`Bearer <token>` or a bare token)."""
    if not header_value:
        return None
    value = header_value.strip()
    scheme, _, rest = value.partition(" ")
    if rest and scheme.lower() == "bearer":
        value = rest.strip()
    return value or None


EXPIRED_TOKEN_MESSAGE = "The token has expired; log in again."  # noqa: S105 - a sentence
_NOT_VALID = "The token is not valid."
# The HMAC and claim checks of a token were the largest cost of a cached read (issue 8); a
# token's claims never change, so a token verified once is remembered (LRU) and only its
# expiry is checked again. A rejected token raises, and is not remembered.
_VERIFIED_TOKENS = 4096


def verify_token(token: str | None, *, secret: str, issuer: str) -> Caller:
    """The caller a token names; missing, forged, expired or malformed is Unauthenticated."""
    if not token:
        raise Unauthenticated("A valid token is required.")
    try:
        caller, expires_at = _verified_claims(token, secret, issuer)
    except jwt.ExpiredSignatureError:
        raise Unauthenticated(EXPIRED_TOKEN_MESSAGE) from None
    except jwt.PyJWTError:
        raise Unauthenticated(_NOT_VALID) from None
    # PyJWT's own rule: expired once now reaches `exp`. Checked here on every use, because a
    # verified token is remembered (below).
    if time.time() >= expires_at:
        raise Unauthenticated(EXPIRED_TOKEN_MESSAGE)
    return caller


@functools.lru_cache(maxsize=_VERIFIED_TOKENS)
def _verified_claims(token: str, secret: str, issuer: str) -> tuple[Caller, float]:
    claims = jwt.decode(
        token,
        secret,
        algorithms=[ALGORITHM],
        issuer=issuer,
        options={"require": _REQUIRED_CLAIMS},
    )
    roles = claims["roles"]
    if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
        raise jwt.InvalidTokenError("roles is not a list of strings")
    session_id = claims.get("sid")
    if session_id is not None and not isinstance(session_id, str):
        raise jwt.InvalidTokenError("sid is not a string")
    expires_at = float(claims["exp"])
    caller = Caller(
        user_id=str(claims["sub"]),
        email=str(claims["email"]),
        roles=tuple(roles),
        expires_at=expires_at,
        session_id=session_id,
    )
    return caller, expires_at


_password_hash = PasswordHash((Argon2Hasher(),))
# Verified against when the email is unknown, so both failures cost the same time.
_DUMMY_HASH = _password_hash.hash("not-a-real-password-used-for-timing")

# Each Argon2 hash or verification holds ARGON2_MEMORY_BYTES (pwdlib's default memory cost) while
# it runs: a burst of logins on an unbounded thread pool exhausts the service's memory. So at
# most `max_concurrent` run at once in a process and at most `max_waiting` more wait for a turn;
# past that the answer is SERVICE_UNAVAILABLE at once (the user service sets both from
# PASSWORD_HASH_CONCURRENCY and PASSWORD_HASH_QUEUE).
ARGON2_MEMORY_BYTES = 64 * 1024 * 1024
# 2 x 64 MiB: well inside the user service's 512 MiB limit (deploy/k8s/user-service.yaml).
DEFAULT_HASH_CONCURRENCY = 2
# About half a second of waiting at ~130 ms a verification.
DEFAULT_HASH_QUEUE = 8
HASHING_BUSY = "Too many passwords are being checked right now; try again in a moment."


class _HashingBound:
    """The running slots (a capacity limiter on the worker threads) and the count of calls
    admitted (running or queued), kept here: the limiter only sees a waiter once it has
    yielded, after the admission decision."""

    def __init__(self, max_concurrent: int, max_waiting: int) -> None:
        self.limiter = anyio.CapacityLimiter(max_concurrent)
        self.max_admitted = max_concurrent + max_waiting
        self.admitted = 0

    async def run(self, func: Callable[..., T], *args: Any) -> T:
        """`func(*args)` in a worker thread within the bound; SERVICE_UNAVAILABLE at once when
        every running slot and queue place is taken."""
        if self.admitted >= self.max_admitted:
            raise ServiceUnavailable(HASHING_BUSY)
        self.admitted += 1
        try:
            return await anyio.to_thread.run_sync(func, *args, limiter=self.limiter)
        finally:
            self.admitted -= 1


_hashing = _HashingBound(DEFAULT_HASH_CONCURRENCY, DEFAULT_HASH_QUEUE)


def configure_hashing(*, max_concurrent: int, max_waiting: int) -> None:
    """Bound the password hashing of this process: `max_concurrent` at once, `max_waiting` more
    queued (the rest are refused at once)."""
    global _hashing
    _hashing = _HashingBound(max_concurrent, max_waiting)


async def hash_password(password: str) -> str:
    """Argon2 hash of a password, computed in a thread (it takes ~100 ms), within the bound."""
    return await _hashing.run(_password_hash.hash, password)


async def verify_password(password: str, password_hash: str | None) -> bool:
    """Whether the password matches; a missing hash still costs one verification."""
    target = password_hash or _DUMMY_HASH
    matches = await _hashing.run(_password_hash.verify, password, target)
    return bool(matches) and password_hash is not None
