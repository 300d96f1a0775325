"""Settings of the scheduler service (the common ones come from ServiceSettings)."""

from __future__ import annotations

from pydantic import Field

from shared.settings import ServiceSettings


class SchedulerSettings(ServiceSettings):
    """Only what this service adds to the common settings."""

    service_name: str = "scheduler_service"
    port: int = Field(default=9000, ge=1, le=65535)

    # The product catalog API (fakestoreapi's `/products` shape); unset = the shipped catalog.
    catalog_url: str | None = None
    # When promotions go out, in cron syntax.
    promotion_cron: str = "*/5 * * * *"
    # If set, a fixed interval replaces the cron (tests, demos).
    promotion_interval_seconds: float | None = Field(default=None, gt=0)
