"""One pooled client per downstream service, and the calls the resolvers make.

httpx's API on aiohttp's connection pool (httpx-aiohttp's transport): httpcore's pool spent
most of the gateway's time on bookkeeping under concurrency (62% of its samples on
placeOrder; about a tenth of aiohttp's rate at 50 concurrent calls in the same run,
docs/performance.md). Tests hand in their own transport (an ASGI app in process).

Every call forwards the caller's token and the correlation id, and turns what comes back into
either the response body (bytes, so the cache can keep it as it is) or an `AppError`:
- the service's own error body `{"error": {"code", "message"}}` -> that error, as it is;
- no answer (connect error, timeout, no free pooled connection within
  DOWNSTREAM_POOL_TIMEOUT_SECONDS) or a 5xx without that body -> SERVICE_UNAVAILABLE.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import aiohttp
import httpx
import orjson
from httpx_aiohttp import AiohttpTransport

from graphql_gateway.auth import Credentials
from graphql_gateway.limits import FORWARDED_FOR_HEADER, client_address
from graphql_gateway.settings import GatewaySettings
from shared import tracing
from shared.errors import (
    CODE_FOR_STATUS,
    AppError,
    InternalError,
    NotFound,
    ServiceUnavailable,
)
from shared.logging import CORRELATION_HEADER, current_correlation_id, get_logger

log = get_logger(__name__)

_JSON_HEADERS = {"content-type": "application/json", "accept": "application/json"}
_SERVER_ERROR = 500
_CLIENT_ERROR = 400
_READ = httpx.ByteStream(b"")


def unavailable(label: str) -> ServiceUnavailable:
    """The error a caller sees while a service does not answer."""
    return ServiceUnavailable(f"The {label} is unavailable; try again shortly.")


def error_from_response(label: str, status: int, content: bytes) -> AppError:
    """The error an unsuccessful answer of a service stands for."""
    try:
        body = orjson.loads(content)
        error = body["error"]
        code, message = error["code"], error["message"]
        if isinstance(code, str) and isinstance(message, str) and message:
            return AppError.from_code(code, message)
    except (orjson.JSONDecodeError, KeyError, TypeError):
        pass
    if status >= _SERVER_ERROR:
        return unavailable(label)
    code = CODE_FOR_STATUS.get(status)
    return AppError.from_code(code.value, "") if code is not None else InternalError()


def pooled_transport(settings: GatewaySettings) -> AiohttpTransport:
    """aiohttp's pool of up to DOWNSTREAM_MAX_CONNECTIONS connections to one service."""
    return AiohttpTransport(
        limits=httpx.Limits(max_connections=settings.downstream_max_connections)
    )


class ServiceClient:
    """A downstream service: its pooled connections, header forwarding and error mapping."""

    def __init__(
        self,
        label: str,
        base_url: str,
        settings: GatewaySettings,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.label = label
        self._http = httpx.AsyncClient(
            base_url=base_url,
            timeout=httpx.Timeout(
                settings.downstream_timeout_seconds, pool=settings.downstream_pool_timeout_seconds
            ),
            transport=transport or pooled_transport(settings),
        )
        # Client spans and trace headers whatever the transport (the global instrumentation
        # knows only httpx's own).
        tracing.instrument_http_client(self._http)

    async def aclose(self) -> None:
        """Close the pooled connections."""
        await self._http.aclose()

    async def send(
        self,
        method: str,
        path: str,
        *,
        credentials: Credentials | None = None,
        body: Any = None,
        params: dict[str, str] | None = None,
    ) -> httpx.Response:
        """Send one request; a failure to answer becomes SERVICE_UNAVAILABLE."""
        headers = dict(_JSON_HEADERS)
        if credentials is not None:
            headers["authorization"] = credentials.authorization
        correlation_id = current_correlation_id()
        if correlation_id:
            headers[CORRELATION_HEADER] = correlation_id
        address = client_address()
        if address:
            headers[FORWARDED_FOR_HEADER] = address
        content = orjson.dumps(body) if body is not None else None
        try:
            response = await self._http.request(
                method, path, content=content, params=params, headers=headers
            )
        except (httpx.TransportError, aiohttp.ClientError, TimeoutError) as exc:
            log.warning(
                "downstream call failed",
                service=self.label,
                method=method,
                error=type(exc).__name__,
            )
            raise unavailable(self.label) from None
        # The body is read and the response closed: its stream, which refers back to the
        # response (a cycle only the garbage collector frees, holding aiohttp's response and
        # headers), is no longer needed.
        response.stream = _READ
        return response

    async def call(
        self,
        method: str,
        path: str,
        *,
        credentials: Credentials | None = None,
        body: Any = None,
        params: dict[str, str] | None = None,
    ) -> bytes:
        """The JSON body of a successful answer, as bytes; otherwise the error it stands for."""
        response = await self.send(method, path, credentials=credentials, body=body, params=params)
        if response.status_code >= _CLIENT_ERROR:
            error = error_from_response(self.label, response.status_code, response.content)
            if response.status_code >= _SERVER_ERROR:
                log.warning("downstream error", service=self.label, status=response.status_code)
            raise error
        return response.content


def _segment(value: str) -> str:
    """A value as one URL path segment (an id can never climb to another route)."""
    return quote(value, safe="")


class UserClient:
    """user_service: registration, login, the caller's details and preferences."""

    def __init__(self, service: ServiceClient) -> None:
        self.service = service

    async def register(
        self, *, name: str, email: str, password: str, preferences: list[str] | None
    ) -> bytes:
        """POST /users -> {token, user}."""
        body: dict[str, Any] = {"name": name, "email": email, "password": password}
        if preferences is not None:
            body["preferences"] = preferences
        return await self.service.call("POST", "/users", body=body)

    async def login(self, *, email: str, password: str) -> bytes:
        """POST /auth/login -> {token, user}."""
        return await self.service.call(
            "POST", "/auth/login", body={"email": email, "password": password}
        )

    async def refresh(self, refresh_token: str) -> bytes:
        """POST /auth/refresh -> {token, refreshToken, user} (the refresh token is rotated)."""
        return await self.service.call(
            "POST", "/auth/refresh", body={"refreshToken": refresh_token}
        )

    async def logout(self, credentials: Credentials) -> bytes:
        """POST /auth/logout -> {loggedOut}: ends the session of the token."""
        return await self.service.call("POST", "/auth/logout", credentials=credentials)

    async def verify_email(self, token: str) -> bytes:
        """POST /auth/verify-email {token} -> user."""
        return await self.service.call("POST", "/auth/verify-email", body={"token": token})

    async def resend_verification(self, credentials: Credentials) -> bytes:
        """POST /users/me/verification-requests -> {message}."""
        return await self.service.call(
            "POST", "/users/me/verification-requests", credentials=credentials
        )

    async def request_password_reset(self, email: str) -> bytes:
        """POST /auth/password-reset-requests {email} -> {message} (the same for any address)."""
        return await self.service.call(
            "POST", "/auth/password-reset-requests", body={"email": email}
        )

    async def reset_password(self, token: str, new_password: str) -> bytes:
        """POST /auth/password-reset {token, newPassword} -> {token, refreshToken, user}."""
        return await self.service.call(
            "POST", "/auth/password-reset", body={"token": token, "newPassword": new_password}
        )

    async def change_password(self, credentials: Credentials, current: str, new: str) -> bytes:
        """PUT /users/me/password -> {token, refreshToken, user}."""
        return await self.service.call(
            "PUT",
            "/users/me/password",
            credentials=credentials,
            body={"currentPassword": current, "newPassword": new},
        )

    async def me(self, credentials: Credentials) -> bytes:
        """GET /users/me -> user."""
        return await self.service.call("GET", "/users/me", credentials=credentials)

    async def purchases(self, credentials: Credentials, first: int) -> bytes:
        """GET /users/me/purchases?first= -> [purchase], newest first."""
        return await self.service.call(
            "GET", "/users/me/purchases", credentials=credentials, params={"first": str(first)}
        )

    async def update_preferences(self, credentials: Credentials, preferences: list[str]) -> bytes:
        """PUT /users/me/preferences -> user."""
        return await self.service.call(
            "PUT",
            "/users/me/preferences",
            credentials=credentials,
            body={"preferences": preferences},
        )


class NotificationClient:
    """notification_service: the caller's notifications, read marks, the tracking pixel."""

    def __init__(self, service: ServiceClient) -> None:
        self.service = service

    async def list(self, credentials: Credentials, *, unread_only: bool) -> bytes:
        """GET /notifications?unread_only= -> [notification], newest first."""
        return await self.service.call(
            "GET",
            "/notifications",
            credentials=credentials,
            params={"unread_only": "true" if unread_only else "false"},
        )

    async def mark_read(self, credentials: Credentials, notification_id: str) -> bytes:
        """POST /notifications/{id}/read -> notification."""
        return await self.service.call(
            "POST", f"/notifications/{_segment(notification_id)}/read", credentials=credentials
        )

    async def pixel(self, token: str) -> httpx.Response:
        """GET /track/{token}.gif, answered as it is (bytes and content type)."""
        response = await self.service.send("GET", f"/track/{_segment(token)}.gif")
        if response.status_code >= _SERVER_ERROR:
            raise error_from_response(self.service.label, response.status_code, response.content)
        return response


class OrderClient:
    """order_service: the caller's orders, placing them, status changes, and the catalog
    they are priced from."""

    def __init__(self, service: ServiceClient) -> None:
        self.service = service

    async def list_orders(
        self, credentials: Credentials, *, limit: int | None = None, offset: int | None = None
    ) -> bytes:
        """GET /orders?limit=&offset= -> [order], the caller's, newest first."""
        params = {
            name: str(value)
            for name, value in (("limit", limit), ("offset", offset))
            if value is not None
        }
        return await self.service.call(
            "GET", "/orders", credentials=credentials, params=params or None
        )

    async def place(
        self,
        credentials: Credentials,
        products: list[dict[str, Any]],
        idempotency_key: str | None = None,
    ) -> bytes:
        """POST /orders {products, idempotencyKey?} -> order (status Placed)."""
        body: dict[str, Any] = {"products": products}
        if idempotency_key is not None:
            body["idempotencyKey"] = idempotency_key
        return await self.service.call("POST", "/orders", credentials=credentials, body=body)

    async def products(self, params: dict[str, str]) -> bytes:
        """GET /products?category=&search=&first=&after= -> {items, endCursor, hasNextPage}
        (public: no token)."""
        return await self.service.call("GET", "/products", params=params)

    async def product(self, product_id: str) -> bytes:
        """GET /products/{id} -> catalog product (public: no token)."""
        if product_id.strip(".") == "":
            # "", "." and ".." name no product, and as a path segment they would name
            # another route.
            raise NotFound("That product is not in the catalog.")
        return await self.service.call("GET", f"/products/{_segment(product_id)}")

    async def update_status(self, credentials: Credentials, order_id: str, status: str) -> bytes:
        """POST /orders/{id}/status {status} -> order."""
        return await self.service.call(
            "POST",
            f"/orders/{_segment(order_id)}/status",
            credentials=credentials,
            body={"status": status},
        )


class RecommendationClient:
    """recommendation_service: the latest list and starting a computation."""

    def __init__(self, service: ServiceClient) -> None:
        self.service = service

    async def latest(self, credentials: Credentials) -> bytes:
        """GET /recommendations -> [product], the latest computed for the caller."""
        return await self.service.call("GET", "/recommendations", credentials=credentials)

    async def request(self, credentials: Credentials) -> bytes:
        """POST /recommendations/requests -> 202 {"message"}."""
        return await self.service.call("POST", "/recommendations/requests", credentials=credentials)


class SchedulerClient:
    """scheduler_service: promotion subscriptions (user id and email come from the token)."""

    def __init__(self, service: ServiceClient) -> None:
        self.service = service

    async def subscribe(self, credentials: Credentials) -> bytes:
        """PUT /subscriptions/me -> {"message"} (twice is still one subscription)."""
        return await self.service.call("PUT", "/subscriptions/me", credentials=credentials)

    async def unsubscribe(self, credentials: Credentials) -> bytes:
        """DELETE /subscriptions/me -> {"message"}."""
        return await self.service.call("DELETE", "/subscriptions/me", credentials=credentials)

    async def unsubscribe_by_link(self, token: str) -> httpx.Response:
        """POST /subscriptions/unsubscribe/{token}: the link in a promotion email."""
        response = await self.service.send("POST", f"/subscriptions/unsubscribe/{_segment(token)}")
        if response.status_code >= _SERVER_ERROR:
            raise error_from_response(self.service.label, response.status_code, response.content)
        return response


@dataclass(frozen=True, slots=True)
class Clients:
    """Every downstream service the gateway calls."""

    users: UserClient
    notifications: NotificationClient
    orders: OrderClient
    recommendations: RecommendationClient
    scheduler: SchedulerClient

    @classmethod
    def from_settings(cls, settings: GatewaySettings) -> Clients:
        """One pooled client per service, at the URLs the settings name."""
        return cls(
            users=UserClient(ServiceClient("user service", settings.user_service_url, settings)),
            notifications=NotificationClient(
                ServiceClient("notification service", settings.notification_service_url, settings)
            ),
            orders=OrderClient(
                ServiceClient("order service", settings.order_service_url, settings)
            ),
            recommendations=RecommendationClient(
                ServiceClient(
                    "recommendation service", settings.recommendation_service_url, settings
                )
            ),
            scheduler=SchedulerClient(
                ServiceClient("scheduler service", settings.scheduler_service_url, settings)
            ),
        )

    async def aclose(self) -> None:
        """Close every pool."""
        for client in (
            self.users,
            self.notifications,
            self.orders,
            self.recommendations,
            self.scheduler,
        ):
            await client.service.aclose()
