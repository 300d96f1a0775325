"""What every service's FastAPI app has: `/health`, `/ready`, `/metrics`, the error mapping,
request logging and metrics with the correlation id, and the caller from the bearer token."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from fastapi.telemetry import TelemetryConfig
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest, start_http_server
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from shared import tracing
from shared.auth import Caller, bearer_token, verify_token
from shared.errors import CODE_FOR_STATUS, AppError, BadUserInput, ErrorCode, InternalError
from shared.logging import CORRELATION_HEADER, clean_correlation_id, correlation_scope, get_logger
from shared.metrics import HTTP_LATENCY, HTTP_REQUESTS, SERVICE_READY
from shared.settings import ServiceSettings

log = get_logger(__name__)

# FastAPI's own OpenTelemetry hooks look up the global providers (reading the environment) on
# every request, and the fleet exports Prometheus metrics, not OpenTelemetry metrics (issue 8:
# ~5% of a cached gateway read): off unless tracing is (`service_telemetry`).
NO_OPENTELEMETRY: TelemetryConfig = {"tracing": False, "metrics": False, "logs": False}


def service_telemetry() -> TelemetryConfig:
    """`FastAPI(telemetry=...)` of every service: request spans when this process traces
    (shared.tracing), none otherwise."""
    config: TelemetryConfig = tracing.server_telemetry() if tracing.enabled() else NO_OPENTELEMETRY
    return config


ReadinessCheck = Callable[[], Awaitable[bool] | bool]
_QUIET_PATHS = frozenset({"/health", "/ready", "/metrics"})


class RequestContextMiddleware:
    """Binds the correlation id (taken from the caller or new), echoes it, logs and measures."""

    def __init__(self, app: ASGIApp, service: str) -> None:
        self.app = app
        self.service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        header = CORRELATION_HEADER.encode()
        supplied = next((v.decode("latin-1") for k, v in scope["headers"] if k == header), None)
        correlation_id = clean_correlation_id(supplied)
        status = 500
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (header, correlation_id.encode())]
            await send(message)

        with correlation_scope(correlation_id):
            tracing.tag_correlation(correlation_id)
            try:
                await self.app(scope, receive, send_with_id)
            finally:
                elapsed = time.perf_counter() - started
                route = scope.get("route")
                route_path = getattr(route, "path", None) or "unmatched"
                method = scope["method"]
                HTTP_REQUESTS.labels(self.service, method, route_path, str(status)).inc()
                HTTP_LATENCY.labels(self.service, method, route_path).observe(elapsed)
                if scope["path"] not in _QUIET_PATHS:
                    log.info(
                        "request",
                        method=method,
                        path=route_path,
                        status=status,
                        duration_ms=round(elapsed * 1000, 2),
                    )


def _first_error_sentence(exc: RequestValidationError) -> str:
    errors = exc.errors()
    if not errors:
        return "The request is not valid."
    first = errors[0]
    if first.get("type") == "json_invalid":
        # FastAPI reports a body that is not JSON as a validation error of position 0.
        return _FRAMEWORK_MESSAGES[400]
    where = ".".join(str(part) for part in first.get("loc", ()) if part != "body")
    message = str(first.get("msg", "is not valid")).rstrip(".")
    return f"{where}: {message}." if where else f"{message}."


async def _app_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, AppError)
    return JSONResponse(exc.to_body(), status_code=exc.http_status)


async def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    error = BadUserInput(_first_error_sentence(exc))
    return JSONResponse(error.to_body(), status_code=error.http_status)


# The framework's own refusals (no route, wrong method, a body that is not JSON), in one sentence.
_FRAMEWORK_MESSAGES = {
    400: "The request body is not valid JSON.",
    404: "Nothing is served at this path.",
    405: "This method is not allowed at this path.",
}


async def _http_error(_: Request, exc: Exception) -> JSONResponse:
    """Starlette's and FastAPI's own HTTP errors in the fleet's error body."""
    assert isinstance(exc, StarletteHTTPException)
    code = CODE_FOR_STATUS.get(exc.status_code, ErrorCode.BAD_USER_INPUT)
    detail = exc.detail if isinstance(exc.detail, str) else ""
    message = _FRAMEWORK_MESSAGES.get(exc.status_code) or f"{detail.rstrip('.')}."
    return JSONResponse(
        {"error": {"code": code.value, "message": message}},
        status_code=exc.status_code,
        headers=exc.headers,
    )


async def _unexpected_error(_: Request, exc: Exception) -> JSONResponse:
    log.error("unhandled error", exc_info=exc)
    error = InternalError()
    return JSONResponse(error.to_body(), status_code=error.http_status)


def install_common(
    app: FastAPI,
    settings: ServiceSettings,
    checks: dict[str, ReadinessCheck] | None = None,
    *,
    metrics_route: bool = True,
) -> None:
    """Add the health routes, error mapping and request middleware to a service app, and
    `/metrics` unless `metrics_route` is False (served on a port of its own: `serve_metrics`).

    `checks` may also be filled later through `app.state.readiness_checks` (in the lifespan,
    once the clients exist).
    """
    app.state.settings = settings
    app.state.readiness_checks = dict(checks or {})
    app.add_middleware(RequestContextMiddleware, service=settings.service_name)
    app.add_exception_handler(AppError, _app_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected_error)

    @app.get("/health", tags=["ops"], include_in_schema=False)
    async def health() -> dict[str, str]:
        return {"status": "ok", "service": settings.service_name}

    @app.get("/ready", tags=["ops"], include_in_schema=False)
    async def ready(request: Request) -> JSONResponse:
        results: dict[str, bool] = {}
        for name, check in request.app.state.readiness_checks.items():
            try:
                outcome = check()
                results[name] = bool(await outcome) if not isinstance(outcome, bool) else outcome
            except Exception:
                results[name] = False
        is_ready = bool(results) and all(results.values())
        SERVICE_READY.labels(settings.service_name).set(1 if is_ready else 0)
        return JSONResponse(
            {"ready": is_ready, "checks": results, "service": settings.service_name},
            status_code=200 if is_ready else 503,
        )

    if metrics_route:

        @app.get("/metrics", tags=["ops"], include_in_schema=False)
        async def metrics() -> Response:
            return PlainTextResponse(generate_latest(), media_type=CONTENT_TYPE_LATEST)


@contextmanager
def serve_metrics(host: str, port: int) -> Iterator[None]:
    """`/metrics` (Prometheus' text format) on a port of its own for the block: kept off a
    public port, reachable where Prometheus scrapes (prometheus_client's server, a thread)."""
    server, thread = start_http_server(port, addr=host)
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def proxy_list(proxies: str) -> list[str]:
    """A TRUSTED_PROXIES value parsed: comma-separated addresses or networks, blanks dropped."""
    return [p.strip() for p in proxies.split(",") if p.strip()]


def trust_forwarded_for(app: FastAPI, proxies: str) -> None:
    """Take a request's client address from X-Forwarded-For (the rightmost address no trusted
    proxy added) when its peer is one of `proxies` ("*": any; empty: nobody, the peer is the
    client). Anyone else's header is ignored, so a client cannot pick its own address."""
    trusted = proxy_list(proxies)
    if trusted:
        app.add_middleware(ProxyHeadersMiddleware, trusted_hosts=trusted)


def get_settings(request: Request) -> Any:
    """The service's settings (set by `install_common`)."""
    return request.app.state.settings


async def current_caller(request: Request) -> Caller:
    """The caller named by the request's bearer token; services verify tokens themselves.
    (A coroutine: FastAPI runs a plain function dependency in a worker thread, a hop that cost
    a fifth of the order service's time per request.)"""
    settings: ServiceSettings = request.app.state.settings
    return verify_token(
        bearer_token(request.headers.get("authorization")),
        secret=settings.jwt_secret.get_secret_value(),
        issuer=settings.jwt_issuer,
    )


CallerDep = Annotated[Caller, Depends(current_caller)]
