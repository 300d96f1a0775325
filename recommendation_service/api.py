"""The recommendation service's HTTP routes (the gateway calls exactly these): parse, call
`service.py`, shape the answer."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, status

from recommendation_service.service import Recommendations
from shared.http import CallerDep
from shared.service_app import service_of

router = APIRouter()

PREPARING = "Recommendations are being prepared; they will arrive as a notification."
# The public contract's product line (a stored line may carry more).
LINE_KEYS = ("productId", "title", "category", "price")

RecommendationsDep = Annotated[Recommendations, Depends(service_of)]


@router.post("/recommendations/requests", status_code=status.HTTP_202_ACCEPTED)
async def request_recommendations(caller: CallerDep, service: RecommendationsDep) -> dict[str, str]:
    """Start computing the caller's recommendations; they arrive as a notification."""
    await service.request(caller.user_id)
    return {"message": PREPARING}


@router.get("/recommendations")
async def latest_recommendations(
    caller: CallerDep, service: RecommendationsDep
) -> list[dict[str, Any]]:
    """The caller's latest recommended products ([] before the first)."""
    lines = await service.latest(caller.user_id)
    return [{key: line.get(key) for key in LINE_KEYS} for line in lines]
