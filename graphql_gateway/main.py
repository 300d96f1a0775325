"""The gateway app: the `/graphql` endpoint (graphql_gateway/graphql_app.py: HTTP, and WebSocket
subscriptions over graphql-transport-ws) inside FastAPI, behind the edge layers, with the
tracking pixel, the emailed links' pages, `/health`, `/ready` and `/metrics`; `wire` builds
and starts the parts every request shares."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

from fastapi import FastAPI

from graphql_gateway.answers import AnswerCache
from graphql_gateway.api import router
from graphql_gateway.cache import GatewayCache
from graphql_gateway.clients import Clients
from graphql_gateway.events import CacheEvents
from graphql_gateway.graphiql import build_page, graphiql_router
from graphql_gateway.graphql_app import GRAPHQL_PATH, graphql_app, graphql_routes
from graphql_gateway.http_transport import GraphQLTransport, overloaded_at
from graphql_gateway.limits import ConnectionSlots, UserLimits, install_edge
from graphql_gateway.pages import router as pages_router
from graphql_gateway.persisted import persisted_queries
from graphql_gateway.schema.context import Gateway
from graphql_gateway.settings import GatewaySettings
from graphql_gateway.subscriptions import SubscriptionHub
from shared.cache import redis_client
from shared.http import install_common, serve_metrics, service_telemetry


@asynccontextmanager
async def wire(app: FastAPI, settings: GatewaySettings) -> AsyncIterator[None]:
    """The parts every request shares (`app.state.gateway`): Redis (read cache, persisted
    queries, ended sessions), one pooled client per service, the subscription hub and the
    Kafka reader that feeds it and drops stale cache entries; started for the app's life,
    closed after it."""
    client = redis_client(settings.redis_url, timeout_seconds=settings.redis_timeout_seconds)
    app.state.persisted_queries = persisted_queries(settings, client)
    cache = GatewayCache(
        client,
        ttl_seconds=settings.cache_ttl_seconds,
        retry_after_seconds=settings.cache_retry_after_seconds,
        enabled=settings.cache_enabled,
    )
    clients = Clients.from_settings(settings)
    hub = SubscriptionHub(settings.subscription_queue_size)
    events = CacheEvents(settings, cache, hub)
    app.state.gateway = Gateway(
        settings=settings,
        clients=clients,
        cache=cache,
        hub=hub,
        limits=UserLimits.from_settings(settings),
        connections=ConnectionSlots(settings.websocket_max_connections_per_user),
    )
    app.state.cache_events = events
    app.state.readiness_checks["events"] = events.ready
    if settings.cache_enabled:
        app.state.readiness_checks["redis"] = cache.ready
    events.start()
    try:
        with (
            serve_metrics(settings.host, settings.metrics_port)
            if settings.metrics_port
            else contextlib.nullcontext()
        ):
            yield
    finally:
        await events.stop()
        await clients.aclose()
        await cache.close()


def create_app(settings: GatewaySettings | None = None) -> FastAPI:
    """The gateway's FastAPI app; everything that connects somewhere starts in its lifespan."""
    settings = settings or GatewaySettings()
    # httpx logs every call with its URL (a pixel's token among them); ours logs failures.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    app = FastAPI(
        title="GraphQL gateway",
        lifespan=partial(wire, settings=settings),
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        telemetry=service_telemetry(),
    )
    # Added first, so it runs last of the middleware: inside the request log, metrics and the
    # body size limit, and before any routing.
    app.add_middleware(AnswerCache, path=GRAPHQL_PATH)
    # In front of the answer cache: it reads the request the transport parsed.
    app.add_middleware(
        GraphQLTransport, path=GRAPHQL_PATH, max_batch=settings.graphql_batch_max_operations
    )
    install_common(
        app,
        settings,
        metrics_route=not settings.metrics_port,
        overload_answer=overloaded_at(GRAPHQL_PATH),
    )
    install_edge(app, settings)
    graphql = graphql_app(settings)
    app.router.routes.extend(graphql_routes(graphql))
    if settings.graphiql_enabled:
        graphql.graphiql_page = app.state.graphiql_page = build_page(settings.graphiql_assets_dir)
        app.include_router(graphiql_router)
    app.include_router(router)
    app.include_router(pages_router)
    return app
