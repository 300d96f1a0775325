"""The `/graphql` endpoint: Strawberry's ASGI app with the gateway's context, orjson on the wire,
GraphQL over HTTP as graphql_gateway/http_view.py answers it, and subscriptions over
WebSocket (graphql-transport-ws) whose connections are authenticated by the token of their
connection_init payload, counted per user and closed when that token expires."""

from __future__ import annotations

import asyncio
import contextlib
import time
from datetime import timedelta
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route, WebSocketRoute
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketState
from strawberry.asgi import ASGIWebSocketAdapter
from strawberry.exceptions import ConnectionRejectionError
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL
from strawberry.types.unset import UNSET, UnsetType

from graphql_gateway.answers import SESSION_REVOKED_KEY
from graphql_gateway.auth import authorization_from_connection_params
from graphql_gateway.graphiql import GraphiQLPage
from graphql_gateway.http_view import GraphQLOverHTTP, MarkPublicAnswers
from graphql_gateway.limits import json_object, schema_extensions
from graphql_gateway.schema import build_schema
from graphql_gateway.schema.context import GatewayContext
from graphql_gateway.settings import GatewaySettings
from graphql_gateway.tracing import tracing_extensions
from shared.auth import EXPIRED_TOKEN_MESSAGE
from shared.errors import RateLimited, Unauthenticated
from shared.logging import get_logger

log = get_logger(__name__)

GRAPHQL_PATH = "/graphql"
# graphql-transport-ws close code for a refused connection_init.
WS_FORBIDDEN = 4403
# Close code for a connection over the user's WEBSOCKET_MAX_CONNECTIONS_PER_USER.
WS_TOO_MANY = 4429
# Where a WebSocket's context is kept in its scope's state, to give its slot back at the end.
_WS_CONTEXT = "gateway_context"


class GatewayWebSocketAdapter(ASGIWebSocketAdapter):
    """Strawberry's WebSocket adapter whose close is a no-op once the socket is closed (a
    refused connection is closed with our own reason before Strawberry closes it again)."""

    async def close(self, code: int, reason: str) -> None:
        if self.ws.application_state == WebSocketState.DISCONNECTED:
            return
        await self.ws.close(code=code, reason=reason)


class GatewayGraphQL(GraphQLOverHTTP):
    """Strawberry's ASGI app with our context, orjson on the wire, GraphQL over HTTP as
    graphql_gateway/http_view.py answers it, and WebSocket connections authenticated by the
    token of their connection_init payload."""

    websocket_adapter_class = GatewayWebSocketAdapter  # type: ignore[assignment]
    # Strawberry's page with its scripts served by the gateway (graphql_gateway/graphiql.py).
    graphiql_page: GraphiQLPage | None = None

    @property
    def graphql_ide_html(self) -> str:
        return self.graphiql_page.html if self.graphiql_page else super().graphql_ide_html

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            if scope["type"] == "websocket":
                context = scope.get("state", {}).get(_WS_CONTEXT)
                if isinstance(context, GatewayContext):
                    connection_closed(context)

    async def get_context(
        self, request: Request | WebSocket, response: Response | WebSocket
    ) -> GatewayContext:
        context = GatewayContext(
            gateway=request.app.state.gateway,
            authorization=request.headers.get("authorization"),
            request=request,
            response=response,
        )
        if isinstance(request, WebSocket):
            setattr(request.state, _WS_CONTEXT, context)
        if context.authorization is not None and isinstance(request, Request):
            await context.check_session(request.scope.get(SESSION_REVOKED_KEY))
        return context

    def encode_json(self, data: object) -> bytes:
        return orjson.dumps(data)

    def decode_json(self, data: str | bytes) -> Any:
        return json_object(data)

    async def on_ws_connect(self, context: GatewayContext) -> UnsetType | dict[str, object] | None:
        """Accept the connection only with a valid token in the connection_init payload
        (`{"Authorization": "Bearer ..."}` or `{"token": ...}`); otherwise close it with 4403
        and the reason `UNAUTHENTICATED: <sentence>`."""
        context.authorization = authorization_from_connection_params(context.connection_params)
        try:
            await context.check_session()
            credentials = context.credentials()
        except Unauthenticated as exc:
            log.info("websocket connection refused", reason=exc.message)
            await context.response.close(
                code=WS_FORBIDDEN, reason=f"{exc.code.value}: {exc.message}"
            )
            raise ConnectionRejectionError from None
        user_id = credentials.caller.user_id
        try:
            context.gateway.connections.take(user_id)
        except RateLimited as exc:
            log.info("websocket connection refused", reason=exc.message)
            await context.response.close(
                code=WS_TOO_MANY, reason=f"{exc.code.value}: {exc.message}"
            )
            raise ConnectionRejectionError from None
        context.connection_of = user_id
        if credentials.caller.expires_at is not None:
            context.expiry_watch = asyncio.create_task(
                close_at_expiry(context.response, credentials.caller.expires_at),
                name="websocket-token-expiry",
            )
        return UNSET


def connection_closed(context: GatewayContext) -> None:
    """A subscription connection has ended: give its user's slot back, stop its expiry watch."""
    if context.connection_of is not None:
        context.gateway.connections.give_back(context.connection_of)
        context.connection_of = None
    if context.expiry_watch is not None:
        context.expiry_watch.cancel()


# How often a connection waiting for its token to expire looks whether it is still open, so
# its watch ends soon after the client leaves.
EXPIRY_CHECK_SECONDS = 30.0


async def close_at_expiry(websocket: WebSocket, expires_at: float) -> None:
    """Close a subscription connection with 4403 when its token expires: a connection is only
    as good as the token it was opened with."""
    while websocket.application_state != WebSocketState.DISCONNECTED:
        remaining = expires_at - time.time()
        if remaining <= 0:
            log.info("websocket token expired; closing the connection")
            with contextlib.suppress(RuntimeError):  # closed meanwhile by either side
                reason = f"{Unauthenticated.code.value}: {EXPIRED_TOKEN_MESSAGE}"
                await websocket.close(code=WS_FORBIDDEN, reason=reason)
            return
        await asyncio.sleep(min(remaining, EXPIRY_CHECK_SECONDS))


def graphql_app(settings: GatewaySettings) -> GatewayGraphQL:
    """The endpoint over the gateway's schema, with the settings' limits."""
    app = GatewayGraphQL(
        build_schema(
            settings.graphql_document_cache_size,
            [*schema_extensions(settings), MarkPublicAnswers, *tracing_extensions()],
        ),
        graphql_ide="graphiql" if settings.graphiql_enabled else None,
        subscription_protocols=(GRAPHQL_TRANSPORT_WS_PROTOCOL,),
        connection_init_wait_timeout=timedelta(
            seconds=settings.websocket_connection_init_timeout_seconds
        ),
        max_subscriptions_per_connection=settings.websocket_max_subscriptions,
    )
    app.public_max_age_seconds = settings.public_cache_max_age_seconds
    return app


def graphql_routes(graphql_app: GatewayGraphQL) -> list[BaseRoute]:
    """`/graphql` as routes (a mount would redirect `/graphql` to `/graphql/`): HTTP, and the
    WebSocket for subscriptions; each named in the scope like FastAPI's own routes so request
    metrics and logs carry its path."""
    http = Route(GRAPHQL_PATH, graphql_app, methods=["GET", "POST"])
    websocket = WebSocketRoute(GRAPHQL_PATH, graphql_app)
    for route in (http, websocket):
        route.app = _named(route, graphql_app)
    return [http, websocket]


def _named(route: BaseRoute, graphql_app: GatewayGraphQL) -> Any:
    async def named(scope: Scope, receive: Receive, send: Send) -> None:
        scope["route"] = route
        await graphql_app(scope, receive, send)

    return named
