"""HTTP routes besides `/graphql`: the tracking pixel emails load through the public URL (the
pages their links open are in `pages`)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from graphql_gateway.schema.context import Gateway

router = APIRouter()

_PASSED_HEADERS = ("cache-control", "expires", "pragma")
_NO_STORE = "no-store, no-cache, must-revalidate, max-age=0"


@router.get("/track/{token}.gif", include_in_schema=False)
async def tracking_pixel(token: str, request: Request) -> Response:
    """Proxy to the notification service, which marks the notification read and announces it
    (`notification.read`), which drops the owner's cached lists."""
    gateway: Gateway = request.app.state.gateway
    answer = await gateway.clients.notifications.pixel(token)
    headers = {name: answer.headers[name] for name in _PASSED_HEADERS if name in answer.headers}
    headers.setdefault("cache-control", _NO_STORE)
    return Response(
        content=answer.content,
        status_code=answer.status_code,
        media_type=answer.headers.get("content-type", "image/gif"),
        headers=headers,
    )
