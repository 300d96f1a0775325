"""Settings of the scheduler service (the common and catalog ones come from the bases)."""

from __future__ import annotations

from pydantic import Field, model_validator

from shared.catalog.settings import CatalogServiceSettings
from shared.services import SCHEDULER


class SchedulerSettings(CatalogServiceSettings):
    """Only what this service adds to the common and catalog settings."""

    service_name: str = SCHEDULER.name
    port: int = Field(default=SCHEDULER.port, ge=1, le=65535)

    # When promotions go out, in cron syntax (UTC).
    promotion_cron: str = "*/5 * * * *"
    # If set, a fixed interval replaces the cron (tests, demos).
    promotion_interval_seconds: float | None = Field(default=None, gt=0)
    # The job's name: part of the lock key of each firing.
    promotion_job_name: str = "promotions"
    # A firing later than this after its scheduled time is skipped (the next one comes).
    promotion_misfire_grace_seconds: int = Field(default=60, ge=1)
    # How long a period's done mark is kept (it only has to outlive its slot).
    promotion_lock_ttl_seconds: int = Field(default=86_400, ge=1)
    # How long a run holds its period before another run may take it over (a crashed run's
    # lease expires); longer than one period's work.
    promotion_lease_seconds: float = Field(default=300, gt=0)
    # How often each replica takes up periods that a failed or crashed run left unfinished,
    # and how far back it looks for them.
    promotion_retry_seconds: float = Field(default=60, gt=0)
    promotion_catch_up_seconds: float = Field(default=3600, gt=0)
    # Where one-click unsubscribe links point; unset = `<PUBLIC_BASE_URL>/unsubscribe`.
    promotion_unsubscribe_base_url: str | None = None
    # How long a promotion email's unsubscribe link works (RFC 8058 one-click and the page).
    unsubscribe_link_ttl_seconds: int = Field(default=5_184_000, ge=86_400)

    # Redis for the firing claims across replicas; unset = a `job_runs` collection in MongoDB.
    redis_url: str | None = None

    @model_validator(mode="after")
    def _lease_inside_the_done_mark(self) -> SchedulerSettings:
        if self.promotion_lease_seconds >= self.promotion_lock_ttl_seconds:
            raise ValueError(
                "PROMOTION_LEASE_SECONDS must be shorter than PROMOTION_LOCK_TTL_SECONDS"
            )
        if self.promotion_catch_up_seconds >= self.promotion_lock_ttl_seconds:
            raise ValueError(
                "PROMOTION_CATCH_UP_SECONDS must be shorter than PROMOTION_LOCK_TTL_SECONDS"
            )
        return self
