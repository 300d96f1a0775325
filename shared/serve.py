"""Run a service app under uvicorn (asyncio's loop, httptools), as every service's `__main__`
does."""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable
from types import FrameType
from typing import TypeVar

import uvicorn
from fastapi import FastAPI

from shared import tracing
from shared.gc_tuning import record_gc_pauses, tune_garbage_collector
from shared.http_protocol import CoalescingHttpToolsProtocol
from shared.http_server import FleetServer
from shared.logging import configure_logging
from shared.settings import ServiceSettings

# The 10 s shutdown budget: open HTTP connections get this long, then the lifespan stops the
# consumers (each finishes its message in hand), the outbox relay and the producer.
GRACEFUL_SHUTDOWN_SECONDS = 3

SettingsT = TypeVar("SettingsT", bound=ServiceSettings)


def run_service(create_app: Callable[[SettingsT], FastAPI], settings: SettingsT) -> None:
    """Serve the app on the settings' host and port until SIGINT/SIGTERM."""
    configure_logging(
        settings.service_name,
        settings.log_level,
        settings.log_format,
        routine_per_second=settings.log_routine_per_second,
    )
    # uvicorn re-raises the SIGTERM it caught once its graceful shutdown is done; with the
    # default handler that would end the process as "killed by SIGTERM" instead of exit 0.
    signal.signal(signal.SIGTERM, _exit_cleanly)
    # Only when OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_TRACES_EXPORTER asks; before the app, which
    # reads it.
    tracing.configure(settings.service_name)
    try:
        app = create_app(settings)
        tune_garbage_collector(settings.gc_gen0_threshold)
        record_gc_pauses(settings.service_name)
        _serve(app, settings)
    finally:
        tracing.shutdown()


def _serve(app: FastAPI, settings: ServiceSettings) -> None:
    FleetServer(server_config(app, settings)).run()


def server_config(app: FastAPI, settings: ServiceSettings) -> uvicorn.Config:
    """How every service is served."""
    return uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        # Not uvloop: its libuv (1.45 and later, libuv PR #3696) accepts one connection per turn
        # of the loop. A process whose turns take tens of milliseconds under load then took in
        # 15-20 new connections a second; the rest waited in the kernel's accept queue for
        # seconds, unseen by the admission limit, and were answered (or refused) 8-9 s late.
        # asyncio's loop accepts every waiting connection at once (up to the backlog).
        loop="asyncio",
        # httptools, each response sent in one write (shared/http_protocol.py).
        http=CoalescingHttpToolsProtocol,
        log_config=None,
        access_log=False,
        # Whose X-Forwarded-For to believe is each app's own decision (the user service's
        # TRUSTED_PROXIES), not uvicorn's blanket default.
        proxy_headers=False,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
    )


def _exit_cleanly(signum: int, frame: FrameType | None) -> None:
    """SIGTERM outside uvicorn's own handling (before it starts, or re-raised after its
    graceful shutdown): a clean exit."""
    sys.exit(0)
