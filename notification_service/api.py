"""The notification service's HTTP routes: the caller's notifications and the read pixel."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response

from notification_service.schemas import NotificationOut
from notification_service.service import Notifications
from shared.http import CallerDep
from shared.service_app import service_of

router = APIRouter()

# A 1x1 transparent GIF.
PIXEL_GIF = (
    b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00\x00\x00\x00"
    b",\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;"
)
NO_STORE_HEADERS = {
    "Cache-Control": "no-store, no-cache, must-revalidate, max-age=0",
    "Pragma": "no-cache",
    "Expires": "0",
}

NotificationsDep = Annotated[Notifications, Depends(service_of)]


@router.get("/notifications", response_model=list[NotificationOut])
async def list_notifications(
    caller: CallerDep,
    service: NotificationsDep,
    unread_only: Annotated[bool, Query()] = True,
) -> list[NotificationOut]:
    return await service.list_mine(caller.user_id, unread_only=unread_only)


@router.post("/notifications/{notification_id}/read", response_model=NotificationOut)
async def mark_read(
    notification_id: str, caller: CallerDep, service: NotificationsDep
) -> NotificationOut:
    return await service.mark_read(notification_id, caller.user_id)


@router.get("/track/{token}.gif", include_in_schema=False)
async def tracking_pixel(token: str, service: NotificationsDep) -> Response:
    """Always the pixel; only a validly signed token marks its notification read."""
    await service.mark_tracked_read(token)
    return Response(PIXEL_GIF, media_type="image/gif", headers=NO_STORE_HEADERS)
