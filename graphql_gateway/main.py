"""The gateway app: Strawberry's ASGI GraphQL app at `/graphql` inside FastAPI, the tracking
pixel, `/health`, `/ready` and `/metrics`."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import orjson
from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL

from graphql_gateway.api import router
from graphql_gateway.cache import GatewayCache
from graphql_gateway.clients import Clients
from graphql_gateway.events import CacheEvents
from graphql_gateway.schema import build_schema
from graphql_gateway.schema.context import Gateway, GatewayContext
from graphql_gateway.settings import GatewaySettings
from shared.cache import redis_client
from shared.http import install_common

GRAPHQL_PATH = "/graphql"


class GatewayGraphQL(GraphQL[GatewayContext, None]):
    """Strawberry's ASGI app with our context and orjson on the wire."""

    async def get_context(
        self, request: Request | WebSocket, response: Response | WebSocket
    ) -> GatewayContext:
        return GatewayContext(
            gateway=request.app.state.gateway,
            authorization=request.headers.get("authorization"),
            request=request,
            response=response,
        )

    def encode_json(self, data: object) -> bytes:
        return orjson.dumps(data)

    def decode_json(self, data: str | bytes) -> Any:
        return orjson.loads(data)


def create_app(settings: GatewaySettings | None = None) -> FastAPI:
    """The gateway's FastAPI app; the lifespan builds the clients, cache and event reader."""
    settings = settings or GatewaySettings()
    # httpx logs every call with its URL (a pixel's token among them); ours logs failures.
    logging.getLogger("httpx").setLevel(logging.WARNING)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        cache = GatewayCache(
            redis_client(settings.redis_url, timeout_seconds=settings.redis_timeout_seconds),
            ttl_seconds=settings.cache_ttl_seconds,
            retry_after_seconds=settings.cache_retry_after_seconds,
        )
        clients = Clients.from_settings(settings)
        events = CacheEvents(settings, cache)
        app.state.gateway = Gateway(settings=settings, clients=clients, cache=cache)
        app.state.cache_events = events
        app.state.readiness_checks.update({"redis": cache.ready, "events": events.ready})
        events.start()
        try:
            yield
        finally:
            await events.stop()
            await clients.aclose()
            await cache.close()

    app = FastAPI(
        title="GraphQL gateway",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    install_common(app, settings)
    graphql_app = GatewayGraphQL(
        build_schema(settings.graphql_document_cache_size),
        graphql_ide="graphiql" if settings.graphiql_enabled else None,
        allow_queries_via_get=False,
    )
    app.router.routes.append(_graphql_route(graphql_app))
    app.include_router(router)
    return app


def _graphql_route(graphql_app: GatewayGraphQL) -> Route:
    """`/graphql` as a route (a mount would redirect `/graphql` to `/graphql/`), named in the
    scope like FastAPI's own routes so request metrics and logs carry its path."""
    route = Route(GRAPHQL_PATH, graphql_app, methods=["GET", "POST"])

    async def named(scope: Scope, receive: Receive, send: Send) -> None:
        scope["route"] = route
        await graphql_app(scope, receive, send)

    route.app = named
    return route
