"""Structured JSON logs (structlog) that carry the correlation id of the work in hand."""

from __future__ import annotations

import logging
import sys
import uuid
from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager
from typing import Any

import orjson
import structlog

CORRELATION_HEADER = "x-correlation-id"
_MAX_CORRELATION_ID_LENGTH = 128


def _render(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> str:
    return orjson.dumps(event_dict, default=str).decode()


def _render_bytes(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> bytes:
    return orjson.dumps(event_dict, default=str)


def configure_logging(service: str, level: str = "INFO") -> None:
    """Send every log line (ours, uvicorn's, aiokafka's) to stdout as one JSON object.

    Our own lines (structlog) go straight to stdout as bytes, one write per line, and a line
    below the level costs a method call: going through the standard library's logging
    (LogRecord, handler lock, text encoding) was a fifth of a cached gateway read (issue 8).
    The libraries' lines keep going through the standard library, rendered the same way.
    """
    level_number = logging.getLevelNamesMapping()[level.upper()]
    shared_processors: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _add_service(service),
    ]
    structlog.configure(
        processors=[
            *shared_processors,
            structlog.processors.format_exc_info,
            _render_bytes,
        ],
        logger_factory=structlog.BytesLoggerFactory(sys.stdout.buffer),
        wrapper_class=structlog.make_filtering_bound_logger(level_number),
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared_processors,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            _render,
        ],
    )
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level_number)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    # Access lines are replaced by our own request log, which carries the correlation id.
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)


def _add_service(service: str) -> structlog.types.Processor:
    def processor(
        _: Any, __: str, event_dict: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        event_dict.setdefault("service", service)
        return event_dict

    return processor


def get_logger(name: str | None = None) -> structlog.typing.FilteringBoundLogger:
    """A structured logger; whatever is bound in the context (correlation id) is added."""
    logger: structlog.typing.FilteringBoundLogger = structlog.get_logger(name)
    return logger


def new_correlation_id() -> str:
    """A fresh correlation id for work that starts here."""
    return uuid.uuid4().hex


def clean_correlation_id(value: str | None) -> str:
    """The caller's id if it is a short printable token, otherwise a fresh one."""
    if value and len(value) <= _MAX_CORRELATION_ID_LENGTH and value.isprintable():
        return value
    return new_correlation_id()


def current_correlation_id() -> str | None:
    """The correlation id bound to the current context, if any."""
    value = structlog.contextvars.get_contextvars().get("correlation_id")
    return str(value) if value else None


@contextmanager
def correlation_scope(correlation_id: str) -> Iterator[str]:
    """Bind a correlation id for the duration of a request or a message."""
    tokens = structlog.contextvars.bind_contextvars(correlation_id=correlation_id)
    try:
        yield correlation_id
    finally:
        structlog.contextvars.reset_contextvars(**tokens)
