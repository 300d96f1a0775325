"""The recommendation service's app: its repository, outbox, catalog client, consumer of orders
and purchase histories, retry loop and use cases, wired on the shared runtime."""

from __future__ import annotations

from fastapi import FastAPI

from recommendation_service import api, events
from recommendation_service.events import CONSUMER_GROUP
from recommendation_service.repository import RecommendationRepository
from recommendation_service.service import Recommendations
from recommendation_service.settings import RecommendationSettings
from shared.catalog import CatalogClient
from shared.runtime import ServiceRuntime
from shared.service_app import create_service_app


def create_app(settings: RecommendationSettings | None = None) -> FastAPI:
    """The FastAPI app; everything that connects somewhere starts in its lifespan."""
    settings = settings or RecommendationSettings()

    def wire(runtime: ServiceRuntime) -> Recommendations:
        repository = RecommendationRepository(runtime.db)
        relay = runtime.use_outbox([repository.requests])
        runtime.prepare(repository.ensure_indexes)
        catalog = runtime.closing(CatalogClient.from_settings(settings))
        recommendations = Recommendations(settings, repository, runtime.publisher, relay, catalog)
        runtime.consume(CONSUMER_GROUP, events.handlers(recommendations))
        runtime.run_loop(recommendations.run_retries, "recommendation-retries")
        return recommendations

    return create_service_app(settings, api.router, wire)
