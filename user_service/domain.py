"""The user service's rules, pure (no I/O): input normalisation, the stored shape of a user,
roles and sessions, its public view, and how order events change a user's purchases and order
summary.

Order events: each order is one purchase document (products, purchase date, the statuses
applied, their queued events), recorded by whichever of its events arrives first (both order
topics carry the products and creation time; the topics are not ordered between them); the
user keeps a bounded summary (`order_status`, `orders`, `latest_order`: the latest order's).
Each (order, status) is applied and notified once, whatever the order of arrival; a late event
never moves `order_status` back. A batch of one user's facts is two steps: the summary (one
write), then each order's new statuses with their events (one write per order); a crash in
between is repaired by the redelivery, which recomputes the same summary from the same facts.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from shared.auth import ROLE_ADMIN, ROLE_CUSTOMER
from shared.errors import BadUserInput
from shared.events.models import OrderStatus, Preference, ProductLine
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
    in their own collection (see the order rules below), never in the user.
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


# --- order events: a user's purchases and order summary ----------------------------------------

ORDER_EMAIL_PREFERENCE: Preference = "order_updates"
SHORT_ID_LENGTH = 8
# How far along its life an order is; a late event never moves a status backwards.
STATUS_RANK: dict[str, int] = {"Placed": 0, "Shipped": 1, "Delivered": 2, "Cancelled": 2}

LATEST_FIELD = "latest_order"
VERSION_FIELD = "order_version"
STATUSES_FIELD = "statuses"


@dataclass(frozen=True, slots=True)
class OrderFact:
    """What an order event says about one of a user's orders."""

    order_id: str
    products: list[ProductLine]
    created_at: datetime
    status: OrderStatus


@dataclass(slots=True)
class PurchaseWrite:
    """One order's statuses not applied before, in arrival order, applied in one write of its
    purchase document (created by the first)."""

    order_id: str
    products: list[dict[str, Any]]
    purchase_date: datetime
    facts: list[int] = field(default_factory=list)  # positions in the batch
    statuses: list[str] = field(default_factory=list)


@dataclass(slots=True)
class BatchPlan:
    """What a batch of one user's facts changes: the summary fields the last of them leaves
    (empty: nothing to write) and the purchases to write, in order of first appearance."""

    summary: dict[str, Any] = field(default_factory=dict)
    purchases: dict[str, PurchaseWrite] = field(default_factory=dict)

    @property
    def new_facts(self) -> list[int]:
        """Positions of the facts not applied before, in arrival order."""
        return sorted(n for write in self.purchases.values() for n in write.facts)


def short_order_id(order_id: str) -> str:
    """The part of an order id people are shown (ids from the order service end in their most
    varying characters)."""
    return order_id[-SHORT_ID_LENGTH:]


def notification_content(order_id: str, status: str) -> str:
    """The in-app text of an order update."""
    return f"Your order {short_order_id(order_id)} is {status}."


def notification_subject(order_id: str, status: str) -> str:
    """The email subject of an order update."""
    return f"Order {short_order_id(order_id)}: {status}"


def wants_order_emails(user: Mapping[str, Any]) -> bool:
    """Order updates are emailed only to users with the `order_updates` preference."""
    return ORDER_EMAIL_PREFERENCE in user.get("preferences", [])


def _is_newer(fact: OrderFact, latest: Mapping[str, Any]) -> bool:
    """Whether the fact's order was created after the recorded latest order (ties by id)."""
    return (as_utc(fact.created_at), fact.order_id) > (
        as_utc(latest["created_at"]),
        str(latest["order_id"]),
    )


def summary_change(
    latest: Mapping[str, Any] | None, fact: OrderFact, seen: Sequence[str]
) -> dict[str, Any]:
    """The summary fields a fact sets, given the latest order recorded and the statuses of the
    fact's order seen so far (a fact seen before gives the same answer: idempotent)."""
    if latest is None or (latest["order_id"] != fact.order_id and _is_newer(fact, latest)):
        return {
            "order_status": fact.status,
            "orders": [p.model_dump() for p in fact.products],
            LATEST_FIELD: {"order_id": fact.order_id, "created_at": as_utc(fact.created_at)},
        }
    if latest["order_id"] == fact.order_id:
        ranks = [STATUS_RANK[status] for status in seen]
        if not ranks or STATUS_RANK[fact.status] >= max(ranks):
            return {"order_status": fact.status}
    return {}


def plan_batch(
    user: Mapping[str, Any], applied: Mapping[str, Sequence[str]], facts: Sequence[OrderFact]
) -> BatchPlan:
    """The summary and purchase writes of one user's facts, each planned on what the ones
    before it leave (a batch may hold a status twice). `applied` maps each order of the batch
    that has a purchase document to its applied statuses."""
    plan = BatchPlan()
    latest: Mapping[str, Any] | None = user.get(LATEST_FIELD)
    seen = {order_id: list(statuses) for order_id, statuses in applied.items()}
    for position, fact in enumerate(facts):
        statuses = seen.setdefault(fact.order_id, [])
        change = summary_change(latest, fact, statuses)
        plan.summary.update(change)
        latest = change.get(LATEST_FIELD, latest)
        if fact.status in statuses:
            continue
        statuses.append(fact.status)
        write = plan.purchases.get(fact.order_id)
        if write is None:
            write = plan.purchases[fact.order_id] = PurchaseWrite(
                order_id=fact.order_id,
                products=[p.model_dump() for p in fact.products],
                purchase_date=as_utc(fact.created_at),
            )
        write.facts.append(position)
        write.statuses.append(fact.status)
    if not plan.purchases:
        # Every fact was applied before, summary included (it is written first).
        plan.summary = {}
    return plan


def purchase_fields(user_id: str, write: PurchaseWrite) -> dict[str, Any]:
    """What the first write of an order's purchase stores besides its statuses and events."""
    return {"user_id": user_id, "products": write.products, "purchase_date": write.purchase_date}
