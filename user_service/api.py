"""The user service's HTTP routes (the gateway calls exactly these)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, status

from shared.http import CallerDep
from user_service.schemas import (
    AuthOut,
    LoginIn,
    PreferencesIn,
    PurchaseOut,
    RegisterIn,
    UserOut,
)
from user_service.service import UserAccounts

router = APIRouter()


def accounts(request: Request) -> UserAccounts:
    """The use cases, built in the lifespan."""
    return request.app.state.accounts


AccountsDep = Annotated[UserAccounts, Depends(accounts)]


def client_address(request: Request) -> str | None:
    """The caller's address (from X-Forwarded-For when a trusted proxy sent it: see main)."""
    return request.client.host if request.client else None


@router.post("/users", status_code=status.HTTP_201_CREATED, response_model=AuthOut)
async def register(body: RegisterIn, users: AccountsDep, request: Request) -> AuthOut:
    return await users.register(body, client_address(request))


@router.post("/auth/login", response_model=AuthOut)
async def login(body: LoginIn, users: AccountsDep, request: Request) -> AuthOut:
    return await users.login(body, client_address(request))


@router.get("/users/me", response_model=UserOut)
async def me(caller: CallerDep, users: AccountsDep) -> UserOut:
    return await users.me(caller)


@router.put("/users/me/preferences", response_model=UserOut)
async def update_preferences(body: PreferencesIn, caller: CallerDep, users: AccountsDep) -> UserOut:
    return await users.update_preferences(caller, body.preferences)


@router.get("/users/me/purchases", response_model=list[PurchaseOut])
async def purchases(
    caller: CallerDep, users: AccountsDep, first: Annotated[int | None, Query(ge=1)] = None
) -> list[PurchaseOut]:
    return await users.purchase_history(caller, first)
