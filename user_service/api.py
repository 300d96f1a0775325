"""The user service's HTTP routes (the gateway and the operator CLI call exactly these)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, status

from shared.http import CallerDep
from shared.service_app import service_of
from user_service.schemas import (
    AuthOut,
    LinkTokenIn,
    LoginIn,
    LogoutOut,
    MessageOut,
    PasswordChangeIn,
    PasswordResetIn,
    PasswordResetRequestIn,
    PreferencesIn,
    PurchaseOut,
    RefreshIn,
    RegisterIn,
    UserOut,
)
from user_service.service import Users

router = APIRouter()


UsersDep = Annotated[Users, Depends(service_of)]


def client_address(request: Request) -> str | None:
    """The caller's address (from X-Forwarded-For when a trusted proxy sent it: see main)."""
    return request.client.host if request.client else None


@router.post("/users", status_code=status.HTTP_201_CREATED, response_model=AuthOut)
async def register(body: RegisterIn, users: UsersDep, request: Request) -> AuthOut:
    return await users.register(body, client_address(request))


@router.post("/auth/login", response_model=AuthOut)
async def login(body: LoginIn, users: UsersDep, request: Request) -> AuthOut:
    return await users.login(body, client_address(request))


@router.post("/auth/refresh", response_model=AuthOut)
async def refresh(body: RefreshIn, users: UsersDep) -> AuthOut:
    """A new token pair for a refresh token (the link of a session; no bearer token)."""
    return await users.sessions.refresh(body.refreshToken)


@router.post("/auth/logout", response_model=LogoutOut)
async def logout(caller: CallerDep, users: UsersDep) -> LogoutOut:
    """End the session of the bearer token."""
    return LogoutOut(loggedOut=await users.sessions.logout(caller))


@router.post("/auth/verify-email", response_model=UserOut)
async def verify_email(body: LinkTokenIn, users: UsersDep) -> UserOut:
    """Verify the address of an emailed link (the token is the credential)."""
    return await users.identity.verify_email(body.token)


@router.post("/auth/password-reset-requests", response_model=MessageOut)
async def request_password_reset(body: PasswordResetRequestIn, users: UsersDep) -> MessageOut:
    """Mail a reset link to a known address; the same answer for any address."""
    return MessageOut(message=await users.identity.request_password_reset(body.email))


@router.post("/auth/password-reset", response_model=AuthOut)
async def reset_password(body: PasswordResetIn, users: UsersDep) -> AuthOut:
    """Set a new password with an emailed link's token; every earlier session ends."""
    return await users.identity.reset_password(body.token, body.newPassword)


@router.get("/users/me", response_model=UserOut)
async def me(caller: CallerDep, users: UsersDep) -> UserOut:
    return await users.me(caller)


@router.put("/users/me/preferences", response_model=UserOut)
async def update_preferences(body: PreferencesIn, caller: CallerDep, users: UsersDep) -> UserOut:
    return await users.update_preferences(caller, body.preferences)


@router.get("/users/me/purchases", response_model=list[PurchaseOut])
async def purchases(
    caller: CallerDep, users: UsersDep, first: Annotated[int | None, Query(ge=1)] = None
) -> list[PurchaseOut]:
    return await users.purchase_history(caller, first)


@router.put("/users/me/password", response_model=AuthOut)
async def change_password(body: PasswordChangeIn, caller: CallerDep, users: UsersDep) -> AuthOut:
    """Change the caller's password; every earlier session ends."""
    return await users.identity.change_password(caller, body.currentPassword, body.newPassword)


@router.post("/users/me/verification-requests", response_model=MessageOut)
async def resend_verification(caller: CallerDep, users: UsersDep) -> MessageOut:
    """Mail the caller a new verification link."""
    return MessageOut(message=await users.identity.resend_verification(caller))


@router.put("/admin/admins/{email}", response_model=UserOut)
async def grant_admin(email: str, caller: CallerDep, users: UsersDep) -> UserOut:
    """An admin grants the admin role (`fleet users grant-admin`); that user's sessions end."""
    return await users.identity.set_admin(caller, email, granted=True)


@router.delete("/admin/admins/{email}", response_model=UserOut)
async def revoke_admin(email: str, caller: CallerDep, users: UsersDep) -> UserOut:
    """An admin revokes the admin role (`fleet users revoke-admin`); that user's sessions end."""
    return await users.identity.set_admin(caller, email, granted=False)
