"""The kafka admin service's app: provisions the topics in the background, serves the ops routes
and the admin-only monitoring API, and refreshes the lag and dead-letter gauges."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from kafka_admin_service.api import router
from kafka_admin_service.monitor import BrokerMonitor, GaugeRefresher
from kafka_admin_service.provisioning import TopicProvisioner, TopicsReadiness
from kafka_admin_service.replay import DlqReplayer
from kafka_admin_service.settings import KafkaAdminSettings
from shared.http import install_common, service_telemetry


def create_app(settings: KafkaAdminSettings | None = None) -> FastAPI:
    """The FastAPI app; `/ready` turns true once every registry topic exists."""
    settings = settings or KafkaAdminSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        provisioner = TopicProvisioner(settings)
        monitor = BrokerMonitor(settings)
        refresher = GaugeRefresher(
            monitor, settings.admin_metrics_interval_seconds, provisioner.created
        )
        replayer = DlqReplayer(settings)
        app.state.provisioner = provisioner
        app.state.monitor = monitor
        app.state.replayer = replayer
        provisioner.start()
        refresher.start()
        try:
            yield
        finally:
            await refresher.stop()
            await provisioner.stop()
            await replayer.close()
            await monitor.close()

    app = FastAPI(title="kafka_admin_service", lifespan=lifespan, telemetry=service_telemetry())
    install_common(app, settings, {"topics": TopicsReadiness(settings)})
    app.include_router(router)
    return app
