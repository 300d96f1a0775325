"""The user rules: input normalisation, the stored shape of a user and its public view. Pure."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

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
) -> dict[str, Any]:
    """The stored user. `orders` holds the products of the latest order; purchases are kept
    in their own collection (user_service/purchases.py), never in the user."""
    return {
        "_id": user_id,
        "name": name,
        "email": email,
        "password_hash": password_hash,
        "preferences": preferences,
        "order_status": NO_ORDER_STATUS,
        "orders": [],
        "created_at": created_at,
    }


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
        preferences=user.get("preferences", []),
        order_status=user.get("order_status", NO_ORDER_STATUS),
        orders=[_product_out(p) for p in user.get("orders", [])],
        purchase_history=[purchase_out(p) for p in purchases],
    )
