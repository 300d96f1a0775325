"""Settings of the recommendation service (the common ones come from ServiceSettings)."""

from __future__ import annotations

from pydantic import Field

from shared.settings import ServiceSettings


class RecommendationSettings(ServiceSettings):
    """Only what this service adds to the common settings."""

    service_name: str = "recommendation_service"
    port: int = Field(default=8000, ge=1, le=65535)

    # The product catalog API (fakestoreapi's `/products` shape); unset = the shipped catalog.
    catalog_url: str | None = None
