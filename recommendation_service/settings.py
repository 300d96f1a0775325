"""Settings of the recommendation service (the common and catalog ones come from the bases)."""

from __future__ import annotations

from pydantic import Field

from shared.catalog.settings import CatalogServiceSettings
from shared.services import RECOMMENDATION


class RecommendationSettings(CatalogServiceSettings):
    """Only what this service adds to the common and catalog settings."""

    service_name: str = RECOMMENDATION.name
    port: int = Field(default=RECOMMENDATION.port, ge=1, le=65535)

    # How many products one recommendation lists.
    recommendation_limit: int = Field(default=5, ge=1)
    # The scoring weights (see recommender.py) and how fast old purchases fade.
    recommendation_weight_co_purchase: float = Field(default=1.0, ge=0)
    recommendation_weight_category: float = Field(default=0.5, ge=0)
    recommendation_weight_quality: float = Field(default=0.1, ge=0)
    recommendation_recency_half_life_days: float = Field(default=90.0, gt=0)
    # A request whose scoring failed (catalog down) or stalled is tried again after this long.
    recommendation_retry_seconds: float = Field(default=30.0, gt=0)
    # How many stalled requests one retry pass picks up.
    recommendation_retry_batch: int = Field(default=50, ge=1)
    # How many of the user's newest orders a request asks the user service for.
    recommendation_history_orders: int = Field(default=20, ge=1)
    # A request (with its history and result) is removed this long after it was made.
    recommendation_request_ttl_seconds: int = Field(default=604_800, ge=60)
    # Co-purchases: per product, the partners most often bought with it (kept), the latest
    # order ids counted (a redelivered order among them counts once), and how often one
    # order's bulk write is retried when a concurrent order changed the same products.
    co_purchase_top_size: int = Field(default=50, ge=1)
    co_purchase_recent_orders: int = Field(default=500, ge=1)
    co_purchase_write_attempts: int = Field(default=5, ge=1)
