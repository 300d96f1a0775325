"""Run a service app under uvicorn (uvloop, httptools), as every service's `__main__` does."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import uvicorn
from fastapi import FastAPI

from shared.logging import configure_logging
from shared.settings import ServiceSettings

GRACEFUL_SHUTDOWN_SECONDS = 8

SettingsT = TypeVar("SettingsT", bound=ServiceSettings)


def run_service(create_app: Callable[[SettingsT], FastAPI], settings: SettingsT) -> None:
    """Serve the app on the settings' host and port until SIGINT/SIGTERM."""
    configure_logging(settings.service_name, settings.log_level)
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http="httptools",
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
    )
