"""What every service's FastAPI app has: `/health`, `/ready`, `/metrics`, the error mapping,
request logging and metrics with the correlation id, admission control (a bounded number of
requests in progress), and the caller from the bearer token."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from http import HTTPStatus
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from fastapi.telemetry import TelemetryConfig
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    Counter,
    Histogram,
    generate_latest,
    start_http_server,
)
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from shared import tracing
from shared.auth import Caller, bearer_token, verify_token
from shared.errors import (
    CODE_FOR_STATUS,
    AppError,
    BadUserInput,
    ErrorCode,
    InternalError,
    ServiceUnavailable,
)
from shared.latency_limit import LatencyLimit
from shared.logging import CORRELATION_HEADER, clean_correlation_id, correlation_scope, get_logger
from shared.metrics import (
    ADMISSION_LIMIT,
    HTTP_LATENCY,
    HTTP_REFUSED,
    HTTP_REQUESTS,
    SERVICE_READY,
)
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
_MAX_METRIC_CHILDREN = 1024
OVERLOADED_MESSAGE = "Too busy to take this request now; try again shortly."
# Seconds a refused client is asked to wait: a slot frees within a request's time.
RETRY_AFTER_SECONDS = "1"
# The answer to a request refused for overload: its body and status (Retry-After is added).
OverloadAnswer = Callable[[Scope, ServiceUnavailable], Response]


def overloaded_answer(_: Scope, error: ServiceUnavailable) -> Response:
    """A service's refusal for overload: 503 with the fleet's error body."""
    return JSONResponse(error.to_body(), status_code=error.http_status)


class AdmissionLimit:
    """At most `max_in_flight` requests inside the app at once. One more waits for a slot, at
    most `max_wait_seconds` and with at most `max_waiting` others; one that cannot wait is
    answered 503 SERVICE_UNAVAILABLE with Retry-After at once, one whose wait ran out then.
    Without it a process past its capacity takes every request and answers them all late
    (issue 16: tens of seconds on a slow machine); with it the excess is refused while the
    rest keep their latency.
    With a `latency_limit` (TARGET_REQUEST_SECONDS, shared/latency_limit.py) the limit below
    `max_in_flight` follows how long requests take: past it a request is refused at once.
    `/health`, `/ready` and `/metrics` always pass: a busy process is not a dead one.

    uvicorn's `limit_concurrency` counts open connections (idle keep-alive ones too), answers
    plain text and refuses the probes as well, so it is not used."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        service: str,
        max_in_flight: int,
        max_waiting: int,
        max_wait_seconds: float,
        latency_limit: LatencyLimit | None = None,
        answer: OverloadAnswer = overloaded_answer,
    ) -> None:
        self.app = app
        self.service = service
        self.latency_limit = latency_limit
        self._limit_gauge = ADMISSION_LIMIT.labels(service)
        self._limit_gauge.set(max_in_flight)
        self._in_flight = 0
        self.max_waiting = max_waiting
        self.max_wait_seconds = max_wait_seconds
        self.answer = answer
        # The standard semaphore: first come first served, and a waiter given up by its
        # timeout at the moment a slot is handed to it gives the slot back.
        self._slots = asyncio.Semaphore(max_in_flight)
        self._waiting = 0

    @property
    def waiting(self) -> int:
        """Requests waiting for a slot now."""
        return self._waiting

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in _QUIET_PATHS:
            await self.app(scope, receive, send)
            return
        limit = self.latency_limit
        if (limit is not None and not limit.admits(self._in_flight)) or not await self._admitted():
            await self._refuse(scope, receive, send)
            return
        epoch = limit.epoch if limit is not None else 0
        self._in_flight += 1
        started = time.perf_counter()
        try:
            await self.app(scope, receive, send)
        finally:
            self._slots.release()
            if limit is not None:
                limit.observe(time.perf_counter() - started, epoch, self._in_flight)
                self._limit_gauge.set(int(limit.limit))
            self._in_flight -= 1

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        HTTP_REFUSED.labels(self.service).inc()
        response = self.answer(scope, ServiceUnavailable(OVERLOADED_MESSAGE))
        response.headers["retry-after"] = RETRY_AFTER_SECONDS
        await response(scope, receive, send)

    async def _admitted(self) -> bool:
        if not self._slots.locked():
            await self._slots.acquire()  # a free slot: returns without waiting
            return True
        if self._waiting >= self.max_waiting or self.max_wait_seconds <= 0:
            return False
        self._waiting += 1
        try:
            async with asyncio.timeout(self.max_wait_seconds):
                await self._slots.acquire()
        except TimeoutError:
            return False
        finally:
            self._waiting -= 1
        return True


def latency_limit_of(settings: ServiceSettings) -> LatencyLimit | None:
    """The adaptive limit TARGET_REQUEST_SECONDS asks for (0: none, MAX_CONCURRENT_REQUESTS is
    fixed), between MIN_CONCURRENT_REQUESTS and MAX_CONCURRENT_REQUESTS."""
    if settings.target_request_seconds <= 0:
        return None
    ceiling = settings.max_concurrent_requests
    return LatencyLimit(
        ceiling=ceiling,
        floor=min(settings.min_concurrent_requests, ceiling),
        target_seconds=settings.target_request_seconds,
    )


class RequestContextMiddleware:
    """Binds the correlation id (taken from the caller or new), echoes it, logs and measures.

    A request that succeeded (status < 400) within `slow_request_ms` is a routine line (kept to
    LOG_ROUTINE_PER_SECOND; every request is counted in the metrics anyway); a failed one is
    always logged, a slow one always as a warning with `slow=true`, so it shows at any LOG_LEVEL
    and is found by level like any other sign of trouble."""

    def __init__(self, app: ASGIApp, service: str, *, slow_request_ms: float) -> None:
        self.app = app
        self.service = service
        self.slow_after_seconds = slow_request_ms / 1000
        self._metrics: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}

    def _metrics_of(self, method: str, route: str, status: int) -> tuple[Counter, Histogram]:
        """The request counter and latency histogram of that method, route and status, kept:
        prometheus_client's `labels()` checks and joins its values on every call (7% of a
        cached read). Routes are templates and methods the parser's, so the map stays small;
        past `_MAX_METRIC_CHILDREN` it is only not kept."""
        key = (method, route, status)
        found = self._metrics.get(key)
        if found is None:
            found = (
                HTTP_REQUESTS.labels(self.service, method, route, str(status)),
                HTTP_LATENCY.labels(self.service, method, route),
            )
            if len(self._metrics) < _MAX_METRIC_CHILDREN:
                self._metrics[key] = found
        return found

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
                counted, timed = self._metrics_of(method, route_path, status)
                counted.inc()
                timed.observe(elapsed)
                if scope["path"] not in _QUIET_PATHS:
                    self._log(method, route_path, status, elapsed)

    def _log(self, method: str, path: str, status: int, elapsed: float) -> None:
        duration_ms = round(elapsed * 1000, 2)
        if elapsed >= self.slow_after_seconds:
            log.warning(
                "request",
                method=method,
                path=path,
                status=status,
                duration_ms=duration_ms,
                slow=True,
            )
            return
        log.info(
            "request",
            method=method,
            path=path,
            status=status,
            duration_ms=duration_ms,
            routine=status < HTTPStatus.BAD_REQUEST,
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
    overload_answer: OverloadAnswer = overloaded_answer,
) -> None:
    """Add the health routes, error mapping, request middleware and admission limit
    (MAX_CONCURRENT_REQUESTS; refusals answered by `overload_answer`) to a service app, and
    `/metrics` unless `metrics_route` is False (served on a port of its own: `serve_metrics`).

    `checks` may also be filled later through `app.state.readiness_checks` (in the lifespan,
    once the clients exist).
    """
    app.state.settings = settings
    app.state.readiness_checks = dict(checks or {})
    app.add_middleware(
        RequestContextMiddleware,
        service=settings.service_name,
        slow_request_ms=settings.log_slow_request_ms,
    )
    # Outside the request log and metrics: a refusal costs no log line (it is counted in
    # http_requests_refused_total), so refusing stays cheap while the process is saturated.
    app.add_middleware(
        AdmissionLimit,
        service=settings.service_name,
        max_in_flight=settings.max_concurrent_requests,
        max_waiting=settings.max_queued_requests,
        max_wait_seconds=settings.max_queue_wait_seconds,
        latency_limit=latency_limit_of(settings),
        answer=overload_answer,
    )
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
