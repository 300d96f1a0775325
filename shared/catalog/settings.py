"""The settings of a service that reads the product catalog."""

from __future__ import annotations

from pydantic import Field

from shared.settings import ServiceSettings


class CatalogServiceSettings(ServiceSettings):
    """The catalog's address and how hard to try it (every field has an env variable)."""

    # The product catalog API (fakestoreapi's `/products` shape); unset = the shipped catalog.
    catalog_url: str | None = None
    catalog_timeout_seconds: float = Field(default=5.0, gt=0)
    # Attempts per read on transient failures (connect errors, timeouts, 5xx).
    catalog_retry_attempts: int = Field(default=3, ge=1)
    # The first backoff between attempts; it doubles, capped by the max.
    catalog_retry_backoff_seconds: float = Field(default=0.2, gt=0)
    catalog_retry_backoff_max_seconds: float = Field(default=2.0, gt=0)
    # How long a fetched product list is reused before the catalog is asked again.
    catalog_cache_ttl_seconds: float = Field(default=60.0, ge=0)
