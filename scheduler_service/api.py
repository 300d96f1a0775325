"""HTTP routes of the scheduler service: the caller's promotion subscription."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, Request

from scheduler_service import domain
from scheduler_service.repository import SchedulerRepository
from scheduler_service.settings import SchedulerSettings
from shared.errors import NotFound
from shared.http import CallerDep

router = APIRouter()

SUBSCRIBED = "You are subscribed to promotions."
UNSUBSCRIBED = "You are unsubscribed from promotions."


def _repository(request: Request) -> SchedulerRepository:
    repository: SchedulerRepository = request.app.state.repository
    return repository


@router.put("/subscriptions/me")
async def subscribe(caller: CallerDep, request: Request) -> dict[str, str]:
    """Subscribe the caller (id and email from the token); twice is still one subscription."""
    await _repository(request).subscribe(caller.user_id, caller.email, datetime.now(UTC))
    return {"message": SUBSCRIBED}


@router.delete("/subscriptions/me")
async def unsubscribe(caller: CallerDep, request: Request) -> dict[str, str]:
    """Unsubscribe the caller (already unsubscribed answers the same)."""
    await _repository(request).unsubscribe(caller.user_id)
    return {"message": UNSUBSCRIBED}


async def _unsubscribe_by_token(token: str, request: Request) -> dict[str, str]:
    settings: SchedulerSettings = request.app.state.settings
    user_id = domain.user_of_unsubscribe_token(settings.jwt_secret.get_secret_value(), token)
    if user_id is None:
        raise NotFound("That unsubscribe link is not valid or has expired.")
    await _repository(request).unsubscribe(user_id)
    return {"message": UNSUBSCRIBED}


@router.post("/subscriptions/unsubscribe/{token}")
async def one_click_unsubscribe(token: str, request: Request) -> dict[str, str]:
    """Unsubscribe the user a promotion email's signed link names: RFC 8058 one-click, or the
    confirm button of the gateway's page. Only a POST acts (mail scanners follow GETs)."""
    return await _unsubscribe_by_token(token, request)
