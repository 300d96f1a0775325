"""The user service's HTTP bodies; response field names follow the public contract."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, EmailStr

from shared.events.models import Preference


class RegisterIn(BaseModel):
    """POST /users. Lengths are checked by the domain against the settings."""

    model_config = ConfigDict(extra="forbid")

    name: str
    email: EmailStr
    password: str
    preferences: list[Preference] | None = None


class LoginIn(BaseModel):
    """POST /auth/login. The email is not validated: any mismatch is the same failure."""

    model_config = ConfigDict(extra="forbid")

    email: str
    password: str


class PreferencesIn(BaseModel):
    """PUT /users/me/preferences."""

    model_config = ConfigDict(extra="forbid")

    preferences: list[Preference]


class ProductOut(BaseModel):
    productId: str
    title: str
    category: str
    price: float | None = None
    quantity: int = 1


class PurchaseOut(BaseModel):
    orderId: str
    products: list[ProductOut]
    purchaseDate: datetime


class UserOut(BaseModel):
    """A user as the contract shows it; the password hash is never part of it."""

    id: str
    name: str
    email: str
    preferences: list[Preference]
    order_status: str
    orders: list[ProductOut]
    # The newest purchases (PURCHASE_HISTORY_PAGE_DEFAULT; GET /users/me/purchases pages).
    purchase_history: list[PurchaseOut]
    emailVerified: bool


class AuthOut(BaseModel):
    token: str
    refreshToken: str
    user: UserOut


class RefreshIn(BaseModel):
    """POST /auth/refresh."""

    model_config = ConfigDict(extra="forbid")

    refreshToken: str


class LinkTokenIn(BaseModel):
    """POST /auth/verify-email: the token of the emailed link."""

    model_config = ConfigDict(extra="forbid")

    token: str


class PasswordResetRequestIn(BaseModel):
    """POST /auth/password-reset-requests. Not validated: any address answers the same."""

    model_config = ConfigDict(extra="forbid")

    email: str


class PasswordResetIn(BaseModel):
    """POST /auth/password-reset: the emailed link's token and the new password."""

    model_config = ConfigDict(extra="forbid")

    token: str
    newPassword: str


class PasswordChangeIn(BaseModel):
    """PUT /users/me/password."""

    model_config = ConfigDict(extra="forbid")

    currentPassword: str
    newPassword: str


class MessageOut(BaseModel):
    message: str


class LogoutOut(BaseModel):
    loggedOut: bool
