"""The notification service's HTTP routes: the caller's notifications and the read pixel."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response

from notification_service import domain, tracking
from notification_service.repository import NotificationRepository
from notification_service.schemas import NotificationOut
from notification_service.settings import NotificationSettings
from shared.errors import NotFound
from shared.events import NotificationRead
from shared.http import CallerDep, get_settings
from shared.logging import get_logger
from shared.outbox import outbox_entry
from shared.runtime import ServiceRuntime

log = get_logger(__name__)
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
NOTIFICATION_NOT_FOUND = "That notification does not exist."


def repository(request: Request) -> NotificationRepository:
    """The repository, built in the lifespan."""
    repo: NotificationRepository = request.app.state.repository
    return repo


RepositoryDep = Annotated[NotificationRepository, Depends(repository)]
SettingsDep = Annotated[NotificationSettings, Depends(get_settings)]


@router.get("/notifications", response_model=list[NotificationOut])
async def list_notifications(
    caller: CallerDep,
    notifications: RepositoryDep,
    settings: SettingsDep,
    unread_only: Annotated[bool, Query()] = True,
) -> list[NotificationOut]:
    found = await notifications.list_for_user(
        caller.user_id, unread_only=unread_only, limit=settings.notifications_page_limit
    )
    return [domain.notification_out(n) for n in found]


async def _mark_read(
    request: Request, notifications: NotificationRepository, notification_id: str, user_id: str
) -> dict[str, Any] | None:
    """Mark read and announce it (`notification.read`) in the same write."""
    runtime: ServiceRuntime = request.app.state.runtime
    event = NotificationRead(notification_id=notification_id, user_id=user_id)
    found, changed = await notifications.mark_read(
        notification_id, user_id, outbox_entry(runtime.publisher, event)
    )
    if changed and runtime.relay is not None:
        await runtime.relay.flush_document(notifications.notifications, notification_id)
    return found


@router.post("/notifications/{notification_id}/read", response_model=NotificationOut)
async def mark_read(
    notification_id: str, caller: CallerDep, notifications: RepositoryDep, request: Request
) -> NotificationOut:
    found = await _mark_read(request, notifications, notification_id, caller.user_id)
    if found is None:
        raise NotFound(NOTIFICATION_NOT_FOUND)
    return domain.notification_out(found)


@router.get("/track/{token}.gif", include_in_schema=False)
async def tracking_pixel(token: str, request: Request, notifications: RepositoryDep) -> Response:
    """Always the pixel; only a validly signed token marks its notification read."""
    read = tracking.verify(request.app.state.links, token)
    if read is not None:
        try:
            await _mark_read(request, notifications, read.notification_id, read.user_id)
        except Exception:
            # The pixel is served regardless: an email client cannot act on an error.
            log.exception("marking a tracked read failed", notification_id=read.notification_id)
    return Response(PIXEL_GIF, media_type="image/gif", headers=NO_STORE_HEADERS)
