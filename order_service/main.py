"""The order service's app: its repository, outbox, catalog client and use cases, wired on the
shared runtime."""

from __future__ import annotations

from fastapi import FastAPI

from order_service import api
from order_service.repository import OrderRepository
from order_service.service import Orders
from order_service.settings import OrderSettings
from shared.catalog import CatalogClient
from shared.runtime import ServiceRuntime
from shared.service_app import create_service_app


def create_app(settings: OrderSettings | None = None) -> FastAPI:
    """The FastAPI app; everything that connects somewhere starts in its lifespan."""
    settings = settings or OrderSettings()

    def wire(runtime: ServiceRuntime) -> Orders:
        repository = OrderRepository(runtime.db)
        runtime.use_outbox([repository.orders])
        runtime.prepare(repository.ensure_indexes)
        catalog = runtime.closing(CatalogClient.from_settings(settings))
        return Orders(settings, runtime, repository, catalog)

    return create_service_app(settings, api.router, wire)
