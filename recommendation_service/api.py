"""HTTP routes of the recommendation service (thin: the flow does the work)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, status

from recommendation_service.events import RecommendationFlow, product_lines
from shared.http import CallerDep

router = APIRouter()

PREPARING = "Recommendations are being prepared; they will arrive as a notification."


def _flow(request: Request) -> RecommendationFlow:
    flow: RecommendationFlow = request.app.state.flow
    return flow


@router.post("/recommendations/requests", status_code=status.HTTP_202_ACCEPTED)
async def request_recommendations(caller: CallerDep, request: Request) -> dict[str, str]:
    """Start computing the caller's recommendations; they arrive as a notification."""
    await _flow(request).request(caller.user_id)
    return {"message": PREPARING}


@router.get("/recommendations")
async def latest_recommendations(caller: CallerDep, request: Request) -> list[dict[str, Any]]:
    """The caller's latest recommended products ([] before the first)."""
    return product_lines(await _flow(request).repository.latest(caller.user_id))
