"""The scheduler service's HTTP routes (the gateway calls exactly these): the caller's promotion
subscription, and the one-click unsubscribe of a promotion email's link."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from scheduler_service.service import Promotions
from shared.http import CallerDep
from shared.service_app import service_of

router = APIRouter()

SUBSCRIBED = "You are subscribed to promotions."
UNSUBSCRIBED = "You are unsubscribed from promotions."

PromotionsDep = Annotated[Promotions, Depends(service_of)]


@router.put("/subscriptions/me")
async def subscribe(caller: CallerDep, service: PromotionsDep) -> dict[str, str]:
    """Subscribe the caller (id and email from the token); twice is still one subscription."""
    await service.subscribe(caller.user_id, caller.email)
    return {"message": SUBSCRIBED}


@router.delete("/subscriptions/me")
async def unsubscribe(caller: CallerDep, service: PromotionsDep) -> dict[str, str]:
    """Unsubscribe the caller (already unsubscribed answers the same)."""
    await service.unsubscribe(caller.user_id)
    return {"message": UNSUBSCRIBED}


@router.post("/subscriptions/unsubscribe/{token}")
async def one_click_unsubscribe(token: str, service: PromotionsDep) -> dict[str, str]:
    """Unsubscribe the user a promotion email's signed link names: RFC 8058 one-click, or the
    confirm button of the gateway's page. Only a POST acts (mail scanners follow GETs)."""
    await service.unsubscribe_by_token(token)
    return {"message": UNSUBSCRIBED}
