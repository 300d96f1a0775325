"""Settings of the order service (the common ones come from ServiceSettings)."""

from __future__ import annotations

from pydantic import Field, model_validator

from shared.settings import ServiceSettings


class OrderSettings(ServiceSettings):
    """Read from the environment and `.env` (see `.env.example`)."""

    service_name: str = "order_service"
    port: int = Field(default=7000, ge=1, le=65535)

    # How many products one order may hold.
    order_max_products: int = Field(default=50, ge=1)
    # Length limits of each product's fields (after trimming).
    product_id_max_length: int = Field(default=64, ge=1)
    product_title_max_length: int = Field(default=200, ge=1)
    product_category_max_length: int = Field(default=100, ge=1)
    # Price bound, so a typo cannot store an absurd amount.
    product_price_max: float = Field(default=1_000_000.0, gt=0)
    # GET /orders paging: the page size when none is asked for, and the largest one served.
    orders_page_default: int = Field(default=20, ge=1)
    orders_page_max: int = Field(default=100, ge=1)

    @model_validator(mode="after")
    def _page_bounds_ordered(self) -> OrderSettings:
        if self.orders_page_default > self.orders_page_max:
            raise ValueError("ORDERS_PAGE_DEFAULT must not exceed ORDERS_PAGE_MAX")
        return self
