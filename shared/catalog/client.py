"""Reads the product catalog: an HTTP API in fakestoreapi's `/products` shape, or, with no URL,
the catalog shipped in this package (`data/products.json`).

Transient failures (connect errors, timeouts, 5xx) are retried with exponential backoff
(tenacity); a 4xx or a malformed answer is not. A short TTL cache spares the catalog repeated
reads. When the catalog cannot be read, `CatalogUnavailable` is raised: callers log it and try
again later.
"""

from __future__ import annotations

import json
import time
from importlib import resources
from typing import Any

import httpx
from pydantic import TypeAdapter, ValidationError
from tenacity import (
    AsyncRetrying,
    RetryError,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential,
)

from shared.catalog.models import Product
from shared.catalog.settings import CatalogServiceSettings
from shared.errors import ServiceUnavailable
from shared.logging import get_logger

log = get_logger(__name__)

PRODUCTS_PATH = "/products"
_SERVER_ERROR = 500
_PRODUCTS = TypeAdapter(list[Product])


class CatalogUnavailable(ServiceUnavailable):
    """The catalog could not be read; try again later."""

    default_message = "The product catalog is unavailable; try again later."


def products_url(base: str) -> str:
    """CATALOG_URL may name the API root or its `/products` endpoint."""
    trimmed = base.rstrip("/")
    return trimmed if trimmed.endswith(PRODUCTS_PATH) else f"{trimmed}{PRODUCTS_PATH}"


def shipped_products() -> list[Product]:
    """The catalog that ships with the project (package data)."""
    raw = resources.files("shared.catalog").joinpath("data/products.json").read_text("utf-8")
    return _PRODUCTS.validate_python(json.loads(raw))


def _is_transient(exc: BaseException) -> bool:
    if isinstance(exc, httpx.HTTPStatusError):
        return exc.response.status_code >= _SERVER_ERROR
    return isinstance(exc, httpx.TransportError)  # connect errors, timeouts, broken reads


class CatalogClient:
    """One pooled HTTP client per service; `products()` is cached for the TTL."""

    def __init__(
        self,
        url: str | None,
        *,
        timeout_seconds: float = 5.0,
        attempts: int = 3,
        backoff_seconds: float = 0.2,
        backoff_max_seconds: float = 2.0,
        cache_ttl_seconds: float = 60.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.url = products_url(url) if url else None
        self._attempts = attempts
        self._backoff = backoff_seconds
        self._backoff_max = backoff_max_seconds
        self._ttl = cache_ttl_seconds
        self._cached: list[Product] | None = None
        self._cached_at = 0.0
        self._index: tuple[list[Product], dict[str, Product]] | None = None
        self._http: httpx.AsyncClient | None = None
        if self.url is not None:
            self._http = httpx.AsyncClient(
                timeout=httpx.Timeout(timeout_seconds), transport=transport
            )

    @classmethod
    def from_settings(cls, settings: CatalogServiceSettings) -> CatalogClient:
        """The client the settings describe."""
        return cls(
            settings.catalog_url,
            timeout_seconds=settings.catalog_timeout_seconds,
            attempts=settings.catalog_retry_attempts,
            backoff_seconds=settings.catalog_retry_backoff_seconds,
            backoff_max_seconds=settings.catalog_retry_backoff_max_seconds,
            cache_ttl_seconds=settings.catalog_cache_ttl_seconds,
        )

    async def products(self) -> list[Product]:
        """Every product; raises CatalogUnavailable when the catalog cannot be read."""
        now = time.monotonic()
        if self._cached is not None and now - self._cached_at < self._ttl:
            return self._cached
        products = await self._fetch() if self._http is not None else shipped_products()
        self._cached, self._cached_at = products, time.monotonic()
        return products

    async def by_id(self) -> dict[str, Product]:
        """Every product by id (built once per fetched list); raises CatalogUnavailable."""
        products = await self.products()
        if self._index is None or self._index[0] is not products:
            self._index = (products, {p.id: p for p in products})
        return self._index[1]

    async def _fetch(self) -> list[Product]:
        try:
            async for attempt in AsyncRetrying(
                stop=stop_after_attempt(self._attempts),
                wait=wait_exponential(multiplier=self._backoff, max=self._backoff_max),
                retry=retry_if_exception(_is_transient),
                reraise=False,
            ):
                with attempt:
                    return await self._get_once()
        except RetryError as exc:
            cause = exc.last_attempt.exception()
            log.error("catalog unavailable", url=self.url, error=repr(cause))
            raise CatalogUnavailable() from cause
        except (httpx.HTTPError, ValidationError, ValueError) as exc:
            log.error("catalog answer refused", url=self.url, error=repr(exc))
            raise CatalogUnavailable() from exc
        raise CatalogUnavailable()  # pragma: no cover - tenacity either returns or raises

    async def _get_once(self) -> list[Product]:
        assert self._http is not None and self.url is not None
        response = await self._http.get(self.url)
        response.raise_for_status()
        body: Any = response.json()
        return _PRODUCTS.validate_python(body)

    async def aclose(self) -> None:
        """Close the pooled HTTP client."""
        if self._http is not None:
            await self._http.aclose()
