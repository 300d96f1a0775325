"""The gateway's settings: where each service listens, the HTTP pool, the cache, GraphiQL."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator

from shared.ratelimit import parse_limit
from shared.services import (
    GATEWAY,
    NOTIFICATION,
    ORDER,
    RECOMMENDATION,
    SCHEDULER,
    USER,
)
from shared.settings import ServiceSettings


class GatewaySettings(ServiceSettings):
    """Only the gateway's own fields; the rest come from `ServiceSettings`."""

    service_name: str = GATEWAY.name
    port: int = Field(default=GATEWAY.port, ge=1, le=65535)

    # The edge adapts how many requests it takes in to their time (shared/latency_limit.py):
    # a placeOrder crosses four processes, so a fixed MAX_CONCURRENT_REQUESTS that answers in
    # time on one machine queued for 1-2 s on one half as fast (issue 16). The services behind
    # it see only what it took in.
    target_request_seconds: float = Field(default=0.5, ge=0)

    user_service_url: str = USER.default_url
    notification_service_url: str = NOTIFICATION.default_url
    order_service_url: str = ORDER.default_url
    recommendation_service_url: str = RECOMMENDATION.default_url
    scheduler_service_url: str = SCHEDULER.default_url

    # One pooled client per service: every request to it waits at most this long to connect,
    # for the answer, and between bytes; and at most DOWNSTREAM_POOL_TIMEOUT_SECONDS for one of
    # its DOWNSTREAM_MAX_CONNECTIONS to be free. Either bound ends as SERVICE_UNAVAILABLE.
    downstream_timeout_seconds: float = Field(default=5.0, gt=0)
    downstream_pool_timeout_seconds: float = Field(default=1.0, gt=0)
    downstream_max_connections: int = Field(default=100, ge=1)

    redis_url: str = "redis://127.0.0.1:6379/0"
    # A slow Redis must cost a request little: it is a cache, not a source of truth.
    redis_timeout_seconds: float = Field(default=0.5, gt=0)
    # false: no Redis cache at all, every read goes to the services (CACHE_ENABLED).
    cache_enabled: bool = True
    cache_ttl_seconds: int = Field(default=60, ge=1)
    # After a Redis failure, skip the cache this long instead of paying a timeout per request.
    cache_retry_after_seconds: float = Field(default=5.0, ge=0)

    # Per-user limits of the expensive operations (moving windows in Redis, the `limits`
    # notation); every alias counts; over them the field answers RATE_LIMITED.
    place_order_limit_per_user: str = "60/minute"
    recommendation_limit_per_user: str = "10/minute"

    # How long a catalog answer (`products`, `product`: public, the same for everyone) is
    # served from Redis before the order service is asked again.
    catalog_cache_ttl_seconds: float = Field(default=60.0, gt=0)

    # Pause between attempts to reach the broker for the cache-invalidation consumer.
    events_reconnect_seconds: float = Field(default=5.0, gt=0)

    graphiql_enabled: bool = True
    # npm packages GraphiQL's page loads (clients/package.json); unset: clients/node_modules
    # of the checkout. Without them the page loads its scripts from the CDN.
    graphiql_assets_dir: Path | None = None
    # Limits of one GraphQL document (graphql_gateway/limits.py): nesting depth, lexer tokens,
    # aliases, and cost = fields selected with each fragment use counted again.
    graphql_max_depth: int = Field(default=8, ge=1)
    graphql_max_tokens: int = Field(default=2000, ge=1)
    graphql_max_aliases: int = Field(default=15, ge=0)
    graphql_max_cost: int = Field(default=300, ge=1)
    # false: introspection queries are refused (production; GraphiQL then cannot complete).
    graphql_introspection: bool = True
    # A port of its own for GET /metrics (compose and k8s: Prometheus scrapes it, the public
    # port answers 404 there); 0: /metrics on PORT like every other service (`make run`).
    metrics_port: int = Field(default=0, ge=0, le=65535)
    # A request body (any route) larger than this answers 413.
    max_request_body_bytes: int = Field(default=65_536, ge=1)
    # Origins a browser may call the gateway from, comma-separated; empty: no CORS headers.
    cors_origins: str = ""
    # Proxies in front of the gateway (a load balancer, the ingress) whose X-Forwarded-For names
    # the client: comma-separated addresses or networks; empty: the peer is the client. The
    # client address goes on to the services (login and registration limits per address).
    trusted_proxies: str = ""
    # Distinct operation texts whose parse and validation results are kept (LRU).
    graphql_document_cache_size: int = Field(default=256, ge=1)

    # GraphQL subscriptions (WebSocket, graphql-transport-ws): a connection must send its
    # connection_init (with the token) within this time; at most this many operations per
    # connection; items queued per subscription before the oldest is dropped (slow client).
    websocket_connection_init_timeout_seconds: float = Field(default=10.0, gt=0)
    websocket_max_subscriptions: int = Field(default=20, ge=1)
    # Subscription connections one user may hold open on one gateway process; one more is
    # closed with 4429 "RATE_LIMITED: ...".
    websocket_max_connections_per_user: int = Field(default=5, ge=1)
    subscription_queue_size: int = Field(default=100, ge=1)

    @field_validator("place_order_limit_per_user", "recommendation_limit_per_user")
    @classmethod
    def _limit_parses(cls, value: str) -> str:
        parse_limit(value)
        return value

    # GraphQL over HTTP (graphql_gateway/http_transport.py, persisted.py): operations per
    # batch (a JSON array of operations); automatic persisted queries kept in Redis this long
    # after their last use, and this many kept in each replica's memory (LRU); a public catalog
    # query by GET may be kept by a CDN this long.
    graphql_batch_max_operations: int = Field(default=10, ge=1)
    apq_enabled: bool = True
    apq_ttl_seconds: int = Field(default=86_400, ge=1)
    apq_local_cache_size: int = Field(default=1024, ge=1)
    public_cache_max_age_seconds: int = Field(default=60, ge=0)
    # true: only the operations of the trusted-documents manifest run (by hash or by text);
    # unset manifest: clients/trusted-documents.json of the checkout.
    trusted_documents_only: bool = False
    trusted_documents_manifest: Path | None = None
