"""The scheduler service's app: the lifespan wires the database, the catalog, the lock store,
the consumer of user and order events, the outbox relay and APScheduler."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from fastapi import FastAPI

from scheduler_service import api, domain
from scheduler_service.events import CONSUMER_GROUP, PromotionJob
from scheduler_service.locks import MongoSlotLock, RedisSlotLock, SlotLock
from scheduler_service.repository import SchedulerRepository
from scheduler_service.settings import SchedulerSettings
from shared.cache import redis_client, redis_ready
from shared.catalog import CatalogClient
from shared.http import install_common, service_telemetry
from shared.runtime import ServiceRuntime


def promotion_trigger(settings: SchedulerSettings) -> BaseTrigger:
    """Every PROMOTION_INTERVAL_SECONDS (on a grid shared by every replica), else the cron."""
    if settings.promotion_interval_seconds is not None:
        return IntervalTrigger(
            seconds=settings.promotion_interval_seconds, start_date=domain.EPOCH, timezone=UTC
        )
    return CronTrigger.from_crontab(settings.promotion_cron, timezone=UTC)


def create_app(settings: SchedulerSettings | None = None) -> FastAPI:
    """The FastAPI app; `/ready` turns true once the database, broker and lock store answer."""
    settings = settings or SchedulerSettings()
    trigger = promotion_trigger(settings)  # a bad PROMOTION_CRON fails at start-up

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # aiokafka clients must be created inside the running event loop.
        runtime = ServiceRuntime(settings)
        repository = SchedulerRepository(runtime.db)
        relay = runtime.use_outbox([repository.subscriptions])
        catalog = CatalogClient.from_settings(settings)
        redis = (
            redis_client(settings.redis_url, timeout_seconds=settings.redis_timeout_seconds)
            if settings.redis_url
            else None
        )
        lock: SlotLock = (
            RedisSlotLock(
                redis,
                settings.promotion_job_name,
                settings.promotion_lock_ttl_seconds,
                settings.promotion_lease_seconds,
            )
            if redis is not None
            else MongoSlotLock(
                repository.job_runs, settings.promotion_job_name, settings.promotion_lease_seconds
            )
        )
        job = PromotionJob(settings, repository, runtime.publisher, relay, catalog, lock)
        runtime.consume(CONSUMER_GROUP, job.handlers())
        app.state.runtime = runtime
        app.state.repository = repository
        app.state.job = job
        runtime.install_readiness(app)
        if redis is not None:
            app.state.readiness_checks["redis"] = lambda: redis_ready(redis)
        await repository.ensure_indexes(settings.promotion_lock_ttl_seconds)
        scheduler = AsyncIOScheduler(timezone=UTC)
        scheduler.add_job(
            job.fire,
            trigger,
            id=settings.promotion_job_name,
            coalesce=True,
            max_instances=1,
            misfire_grace_time=settings.promotion_misfire_grace_seconds,
        )
        scheduler.add_job(
            job.catch_up,
            IntervalTrigger(seconds=settings.promotion_retry_seconds, timezone=UTC),
            id=f"{settings.promotion_job_name}-catch-up",
            coalesce=True,
            max_instances=1,
        )
        app.state.scheduler = scheduler
        try:
            async with runtime.running():
                scheduler.start()
                try:
                    yield
                finally:
                    scheduler.shutdown(wait=False)
        finally:
            await catalog.aclose()
            if redis is not None:
                await redis.aclose()

    app = FastAPI(title="scheduler_service", lifespan=lifespan, telemetry=service_telemetry())
    install_common(app, settings)
    app.include_router(api.router)
    return app
