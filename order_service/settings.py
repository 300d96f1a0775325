"""Settings of the order service (the common and catalog ones come from the bases)."""

from __future__ import annotations

from pydantic import Field, model_validator

from shared.catalog.settings import CatalogServiceSettings
from shared.services import ORDER


class OrderSettings(CatalogServiceSettings):
    """Read from the environment and `.env` (see `.env.example`)."""

    service_name: str = ORDER.name
    port: int = Field(default=ORDER.port, ge=1, le=65535)

    # A placeOrder waits for the catalog: every attempt and backoff together must end well
    # inside the gateway's DOWNSTREAM_TIMEOUT_SECONDS (5), or a client could see
    # SERVICE_UNAVAILABLE for an order that is placed after all.
    catalog_timeout_seconds: float = Field(default=1.5, gt=0)
    catalog_retry_attempts: int = Field(default=2, ge=1)
    catalog_retry_backoff_max_seconds: float = Field(default=0.5, gt=0)

    # How many products one order may hold, and how many of each.
    order_max_products: int = Field(default=50, ge=1)
    order_max_quantity: int = Field(default=99, ge=1)
    # Longest productId accepted; the catalog's titles and categories are stored cut to these
    # lengths, so an order (and every message carrying one) has a known largest size.
    product_id_max_length: int = Field(default=64, ge=1)
    product_title_max_length: int = Field(default=200, ge=1)
    product_category_max_length: int = Field(default=100, ge=1)
    # GET /orders paging: the page size when none is asked for, and the largest one served.
    orders_page_default: int = Field(default=20, ge=1)
    orders_page_max: int = Field(default=100, ge=1)
    # placeOrder's idempotencyKey: the same key from the same user within this window answers
    # the first order; the longest key accepted.
    order_idempotency_window_seconds: int = Field(default=86_400, ge=1)
    order_idempotency_key_max_length: int = Field(default=200, ge=1)
    # GET /products paging (the catalog browsed by the gateway's `products` query).
    catalog_page_default: int = Field(default=20, ge=1)
    catalog_page_max: int = Field(default=100, ge=1)
    # Longest category or search text accepted by GET /products.
    catalog_filter_max_length: int = Field(default=100, ge=1)

    @model_validator(mode="after")
    def _page_bounds_ordered(self) -> OrderSettings:
        if self.orders_page_default > self.orders_page_max:
            raise ValueError("ORDERS_PAGE_DEFAULT must not exceed ORDERS_PAGE_MAX")
        if self.catalog_page_default > self.catalog_page_max:
            raise ValueError("CATALOG_PAGE_DEFAULT must not exceed CATALOG_PAGE_MAX")
        return self
