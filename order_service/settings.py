"""Settings of the order service (the common ones come from ServiceSettings)."""

from __future__ import annotations

from pydantic import Field

from shared.settings import ServiceSettings


class OrderSettings(ServiceSettings):
    """Only what this service adds to the common settings."""

    service_name: str = "order_service"
    port: int = Field(default=7000, ge=1, le=65535)
