"""When promotions go out: the trigger the settings name, and APScheduler firing the promotion
run each period and the catch-up run, as a worker on the shared runtime."""

from __future__ import annotations

from datetime import UTC

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from scheduler_service import domain
from scheduler_service.service import Promotions
from scheduler_service.settings import SchedulerSettings


def promotion_trigger(settings: SchedulerSettings) -> BaseTrigger:
    """Every PROMOTION_INTERVAL_SECONDS (on a grid shared by every replica), else the cron."""
    if settings.promotion_interval_seconds is not None:
        return IntervalTrigger(
            seconds=settings.promotion_interval_seconds, start_date=domain.EPOCH, timezone=UTC
        )
    return CronTrigger.from_crontab(settings.promotion_cron, timezone=UTC)


class PromotionSchedule:
    """APScheduler 3's `AsyncIOScheduler` with the promotion run on `trigger` and the catch-up
    run every `promotion_retry_seconds`; each coalesces missed firings and runs one at a time."""

    def __init__(
        self, settings: SchedulerSettings, promotions: Promotions, trigger: BaseTrigger
    ) -> None:
        self._scheduler = AsyncIOScheduler(timezone=UTC)
        self._scheduler.add_job(
            promotions.fire,
            trigger,
            id=settings.promotion_job_name,
            coalesce=True,
            max_instances=1,
            misfire_grace_time=settings.promotion_misfire_grace_seconds,
        )
        self._scheduler.add_job(
            promotions.catch_up,
            IntervalTrigger(seconds=settings.promotion_retry_seconds, timezone=UTC),
            id=f"{settings.promotion_job_name}-catch-up",
            coalesce=True,
            max_instances=1,
        )

    def start(self) -> None:
        self._scheduler.start()

    async def stop(self) -> None:
        # A run in progress is left to finish or, when the process ends, to its lease's expiry.
        self._scheduler.shutdown(wait=False)
