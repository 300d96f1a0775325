"""The bare baseline for issue 8 (b): one FastAPI route doing what the gateway's cached
`getUserDetails` does below GraphQL - verify the caller's JWT (shared.auth.verify_token) and HGET
the user's details from Redis (the gateway's own cache key) - and nothing else.

Run: REDIS_URL=... JWT_SECRET=... [JWT_ISSUER=fleet] python -m bench.bare_app --port N
"""

from __future__ import annotations

import argparse
import contextlib
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import redis.asyncio as redis
from fastapi import FastAPI, Request, Response

from graphql_gateway.cache import DETAILS_VIEW, user_key
from shared.auth import bearer_token, verify_token
from shared.errors import Unauthenticated
from shared.gc_tuning import tune_garbage_collector
from shared.http import NO_OPENTELEMETRY
from shared.http_server import FleetServer
from shared.serve import server_config
from shared.settings import ServiceSettings


def create_app(redis_url: str, secret: str, issuer: str) -> FastAPI:
    """The app: POST /me (POST like a GraphQL query) returns the cached bytes."""
    client = redis.Redis.from_url(redis_url)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        await client.aclose()

    # Configured like the fleet's apps (shared.http.NO_OPENTELEMETRY), so only GraphQL differs.
    app = FastAPI(lifespan=lifespan, telemetry=NO_OPENTELEMETRY)

    @app.post("/me")
    async def me(request: Request) -> Response:
        try:
            caller = verify_token(
                bearer_token(request.headers.get("authorization")), secret=secret, issuer=issuer
            )
        except Unauthenticated:
            return Response(status_code=401)
        cached = await client.hget(user_key(caller.user_id), DETAILS_VIEW)
        if cached is None:
            return Response(status_code=404)
        return Response(content=cached, media_type="application/json")

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    app = create_app(
        os.environ["REDIS_URL"], os.environ["JWT_SECRET"], os.environ.get("JWT_ISSUER", "fleet")
    )
    # Paced like the services' processes (shared/serve.py), so the ratio is GraphQL's alone.
    tune_garbage_collector(ServiceSettings.model_fields["gc_gen0_threshold"].default)
    # Served as the services are (shared/serve.py), so the ratio is GraphQL's alone.
    config = server_config(app, ServiceSettings.model_construct(host="127.0.0.1", port=args.port))
    # The bench stops it with SIGINT, which uvicorn raises again once it has shut down.
    with contextlib.suppress(KeyboardInterrupt):
        FleetServer(config).run()


if __name__ == "__main__":
    main()
