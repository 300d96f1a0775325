"""The scheduler service's app: its repository, outbox, catalog client, lock store (Redis or
MongoDB), consumer of user and order events, use cases and promotion schedule, wired on the
shared runtime."""

from __future__ import annotations

import functools

from fastapi import FastAPI

from scheduler_service import api, events
from scheduler_service.events import CONSUMER_GROUP
from scheduler_service.locks import RedisSlotLock, SlotLock
from scheduler_service.repository import MongoSlotLock, SchedulerRepository
from scheduler_service.schedule import PromotionSchedule, promotion_trigger
from scheduler_service.service import Promotions
from scheduler_service.settings import SchedulerSettings
from shared.cache import redis_client, redis_ready
from shared.catalog import CatalogClient
from shared.runtime import ServiceRuntime
from shared.service_app import create_service_app


def create_app(settings: SchedulerSettings | None = None) -> FastAPI:
    """The FastAPI app; everything that connects somewhere starts in its lifespan."""
    settings = settings or SchedulerSettings()
    trigger = promotion_trigger(settings)  # a bad PROMOTION_CRON fails at start-up

    def slot_lock(runtime: ServiceRuntime, repository: SchedulerRepository) -> SlotLock:
        """Redis when REDIS_URL is set (then also a readiness check), else `job_runs`."""
        if not settings.redis_url:
            return MongoSlotLock(
                repository.job_runs, settings.promotion_job_name, settings.promotion_lease_seconds
            )
        redis = runtime.closing(
            redis_client(settings.redis_url, timeout_seconds=settings.redis_timeout_seconds)
        )
        runtime.ready_when("redis", lambda: redis_ready(redis))
        return RedisSlotLock(
            redis,
            settings.promotion_job_name,
            settings.promotion_lock_ttl_seconds,
            settings.promotion_lease_seconds,
        )

    def wire(runtime: ServiceRuntime) -> Promotions:
        repository = SchedulerRepository(runtime.db)
        relay = runtime.use_outbox([repository.subscriptions])
        runtime.prepare(
            functools.partial(repository.ensure_indexes, settings.promotion_lock_ttl_seconds)
        )
        catalog = runtime.closing(CatalogClient.from_settings(settings))
        promotions = Promotions(
            settings, repository, runtime.publisher, relay, catalog, slot_lock(runtime, repository)
        )
        runtime.consume(CONSUMER_GROUP, events.handlers(promotions))
        runtime.run_worker(PromotionSchedule(settings, promotions, trigger))
        return promotions

    return create_service_app(settings, api.router, wire)
