"""The user rules: input normalisation, the stored shape of a user and its public view. Pure."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from shared.auth import ROLE_ADMIN, ROLE_CUSTOMER
from shared.errors import BadUserInput
from shared.events.models import Preference
from shared.times import as_utc
from user_service.schemas import ProductOut, PurchaseOut, UserOut

DEFAULT_PREFERENCES: tuple[Preference, ...] = ("order_updates",)
NO_ORDER_STATUS = "none"


@dataclass(frozen=True, slots=True)
class InputLimits:
    """The length limits of registration input (from the settings)."""

    password_min_length: int
    password_max_length: int
    name_max_length: int


def normalize_email(email: str) -> str:
    """Emails are stored and compared lower-case, without surrounding blanks."""
    return email.strip().lower()


def normalize_preferences(preferences: Iterable[Preference] | None) -> list[Preference]:
    """None means the default; duplicates are dropped, the first occurrence's order kept."""
    if preferences is None:
        return list(DEFAULT_PREFERENCES)
    return list(dict.fromkeys(preferences))


def clean_name(name: str, limits: InputLimits) -> str:
    """The name without surrounding blanks; empty or too long is bad input."""
    cleaned = name.strip()
    if not cleaned:
        raise BadUserInput("The name must not be empty.")
    if len(cleaned) > limits.name_max_length:
        raise BadUserInput(f"The name must be at most {limits.name_max_length} characters long.")
    return cleaned


def check_password(password: str, limits: InputLimits) -> None:
    """A password must be within the configured length bounds."""
    if len(password) < limits.password_min_length:
        raise BadUserInput(
            f"The password must be at least {limits.password_min_length} characters long."
        )
    if len(password) > limits.password_max_length:
        raise BadUserInput(
            f"The password must be at most {limits.password_max_length} characters long."
        )


def new_user_id() -> str:
    """A new user id: a UUID4 in hex."""
    return uuid.uuid4().hex


def new_user_document(
    *,
    user_id: str,
    name: str,
    email: str,
    password_hash: str,
    preferences: list[Preference],
    created_at: datetime,
    verify_token_id: str,
    session: NewSession,
) -> dict[str, Any]:
    """The stored user. `orders` holds the products of the latest order; purchases are kept
    in their own collection (user_service/purchases.py), never in the user.
    `roles` are stored (customer until the email is verified); `verify_jti` is the id of the
    one verification link that still works; `sessions` maps session id -> refresh state, and
    `auth_version` counts changes of the session set (writes that end sessions match on it)."""
    return {
        "_id": user_id,
        "name": name,
        "email": email,
        "password_hash": password_hash,
        "preferences": preferences,
        "order_status": NO_ORDER_STATUS,
        "orders": [],
        "created_at": created_at,
        ROLES_FIELD: [ROLE_CUSTOMER],
        VERIFIED_FIELD: False,
        VERIFY_JTI_FIELD: verify_token_id,
        SESSIONS_FIELD: {session.session_id: session.document},
        AUTH_VERSION_FIELD: 1,
    }


# --- roles, verification and sessions ----------------------------------------------------------

ROLES_FIELD = "roles"
VERIFIED_FIELD = "email_verified"
VERIFY_JTI_FIELD = "verify_jti"
RESET_JTI_FIELD = "reset_jti"
SESSIONS_FIELD = "sessions"
AUTH_VERSION_FIELD = "auth_version"
_REFRESH_SEPARATOR = "."
_SECRET_BYTES = 32


def stored_roles(user: Mapping[str, Any]) -> list[str]:
    """The roles a token of this user carries: the stored ones (customer if none are stored:
    users from before roles were stored, until the startup migration sets them)."""
    roles = user.get(ROLES_FIELD)
    return list(roles) if roles else [ROLE_CUSTOMER]


def roles_when_verified(email: str, roles: list[str], admin_emails: frozenset[str]) -> list[str]:
    """An address listed in ADMIN_EMAILS becomes admin when (and only when) it is verified."""
    if email.lower() in admin_emails and ROLE_ADMIN not in roles:
        return [*roles, ROLE_ADMIN]
    return roles


def with_role(roles: list[str], role: str, *, granted: bool) -> list[str]:
    """The roles with `role` added or removed (customer always stays)."""
    kept = [r for r in roles if r != role]
    if granted:
        kept.append(role)
    return kept if ROLE_CUSTOMER in kept else [ROLE_CUSTOMER, *kept]


@dataclass(frozen=True, slots=True)
class NewSession:
    """A session just opened: its id, the refresh token handed out once, what is stored."""

    session_id: str
    refresh_token: str
    document: dict[str, Any]


def secret_hash(secret: str) -> str:
    """How a refresh token's secret is stored: SHA-256 (the secret is 256 random bits, so a
    slow hash adds nothing)."""
    return hashlib.sha256(secret.encode()).hexdigest()


def new_session(user_id: str, now: datetime, ttl_seconds: int) -> NewSession:
    """A session with its first refresh token `<user id>.<session id>.<secret>`."""
    session_id = uuid.uuid4().hex
    secret = secrets.token_urlsafe(_SECRET_BYTES)
    return NewSession(
        session_id=session_id,
        refresh_token=_REFRESH_SEPARATOR.join((user_id, session_id, secret)),
        document={
            "hash": secret_hash(secret),
            "used": [],
            "created_at": now,
            "expires_at": now + timedelta(seconds=ttl_seconds),
        },
    )


def rotated_secret(user_id: str, session_id: str) -> tuple[str, str]:
    """The next refresh token of a session and the hash stored for it."""
    secret = secrets.token_urlsafe(_SECRET_BYTES)
    return _REFRESH_SEPARATOR.join((user_id, session_id, secret)), secret_hash(secret)


@dataclass(frozen=True, slots=True)
class RefreshToken:
    """A refresh token taken apart."""

    user_id: str
    session_id: str
    secret_hash: str


def parse_refresh_token(token: str) -> RefreshToken | None:
    """The parts of `<user id>.<session id>.<secret>`; None if it has not that shape."""
    parts = token.strip().split(_REFRESH_SEPARATOR)
    if len(parts) != 3 or not all(p and p.isascii() and p.isprintable() for p in parts):
        return None
    user_id, session_id, secret = parts
    if not session_id.isalnum():  # a session id is a field name: no dots, no `$`
        return None
    return RefreshToken(user_id, session_id, secret_hash(secret))


def same_hash(a: str, b: str) -> bool:
    """Constant-time comparison of two stored hashes."""
    return hmac.compare_digest(a.encode(), b.encode())


def expired_sessions(sessions: Mapping[str, Any], now: datetime) -> list[str]:
    """The ids of sessions whose refresh token expired (dropped at the next login)."""
    return [sid for sid, s in sessions.items() if as_utc(s["expires_at"]) <= now]


def sessions_over(sessions: Mapping[str, Any], now: datetime, keep: int) -> list[str]:
    """The live sessions to end, oldest first, so that `keep` remain."""
    live = [sid for sid, s in sessions.items() if as_utc(s["expires_at"]) > now]
    live.sort(key=lambda sid: as_utc(sessions[sid]["created_at"]))
    return live[: max(len(live) - keep, 0)]


def _product_out(product: Mapping[str, Any]) -> ProductOut:
    return ProductOut(
        productId=str(product["productId"]),
        title=product["title"],
        category=product["category"],
        price=product.get("price"),
        quantity=int(product.get("quantity") or 1),
    )


def purchase_out(purchase: Mapping[str, Any]) -> PurchaseOut:
    """The public view of a stored purchase."""
    return PurchaseOut(
        orderId=str(purchase["_id"]),
        products=[_product_out(p) for p in purchase.get("products", [])],
        purchaseDate=as_utc(purchase["purchase_date"]),
    )


def user_out(user: Mapping[str, Any], purchases: Sequence[Mapping[str, Any]] = ()) -> UserOut:
    """The public view of a stored user, with the purchases given (newest first)."""
    return UserOut(
        id=user["_id"],
        name=user["name"],
        email=user["email"],
        emailVerified=bool(user.get(VERIFIED_FIELD, False)),
        preferences=user.get("preferences", []),
        order_status=user.get("order_status", NO_ORDER_STATUS),
        orders=[_product_out(p) for p in user.get("orders", [])],
        purchase_history=[purchase_out(p) for p in purchases],
    )
