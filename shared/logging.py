"""Structured logs (structlog) that carry the correlation id of the work in hand: JSON lines for
machines, readable coloured lines for a person at a terminal; routine lines within a budget."""

from __future__ import annotations

import logging
import os
import sys
import time
import uuid
from collections.abc import Callable, Iterator, MutableMapping
from contextlib import contextmanager
from typing import Any

import orjson
import structlog

CORRELATION_HEADER = "x-correlation-id"
_MAX_CORRELATION_ID_LENGTH = 128

LOG_FORMAT_AUTO = "auto"
LOG_FORMAT_JSON = "json"
LOG_FORMAT_CONSOLE = "console"
LOG_FORMATS = (LOG_FORMAT_AUTO, LOG_FORMAT_JSON, LOG_FORMAT_CONSOLE)

# The keyword that marks a routine line at its call site (`log.info("email sent", routine=True)`)
# and the field a written routine line carries when others of its event were dropped before it.
ROUTINE = "routine"
SUPPRESSED = "suppressed"
# LOG_ROUTINE_PER_SECOND counts lines per this window.
_BUDGET_WINDOW_SECONDS = 1.0
# Only these levels are budgeted: a warning or an error marked routine is still written.
_BUDGETED_METHODS = frozenset({"debug", "info"})


def resolved_log_format(log_format: str, stream: Any = None) -> str:
    """`json` or `console`: `auto` means console on a terminal and JSON anywhere else (a pipe,
    a file, a container's log driver)."""
    if log_format != LOG_FORMAT_AUTO:
        return log_format
    stream = stream if stream is not None else sys.stdout
    isatty = getattr(stream, "isatty", None)
    return LOG_FORMAT_CONSOLE if isatty is not None and isatty() else LOG_FORMAT_JSON


def _render(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> str:
    return orjson.dumps(event_dict, default=str).decode()


def _render_bytes(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> bytes:
    return orjson.dumps(event_dict, default=str)


class _Window:
    """One event's budget: when its window opened, lines written in it, lines dropped since the
    last one written."""

    __slots__ = ("opened", "suppressed", "written")

    def __init__(self, opened: float) -> None:
        self.opened = opened
        self.written = 0
        self.suppressed = 0


class RoutineBudget:
    """The first structlog processor: a line marked `routine=True` (a success of routine work)
    is written while its event has budget, at most `per_second` lines per event name a second;
    over it the line is counted and dropped (DropEvent, before any other processor runs), and
    the next one written carries `suppressed=<n>`. Any other line passes untouched.

    No lock: our lines are logged from the event loop's thread; the standard library's (other
    threads) never reach this processor."""

    __slots__ = ("_windows", "clock", "per_second")

    def __init__(self, per_second: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_second = per_second
        self.clock = clock
        self._windows: dict[Any, _Window] = {}

    def __call__(
        self, _: Any, method_name: str, event_dict: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        if not event_dict.pop(ROUTINE, False) or method_name not in _BUDGETED_METHODS:
            return event_dict
        now = self.clock()
        event = event_dict.get("event")
        window = self._windows.get(event)
        if window is None:
            window = self._windows[event] = _Window(now)
        elif now - window.opened >= _BUDGET_WINDOW_SECONDS:
            window.opened = now
            window.written = 0
        if window.written >= self.per_second:
            window.suppressed += 1
            raise structlog.DropEvent
        window.written += 1
        if window.suppressed:
            event_dict[SUPPRESSED] = window.suppressed
            window.suppressed = 0
        return event_dict


def _unmark_routine(
    _: Any, __: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """No budget (LOG_ROUTINE_PER_SECOND=0): every line is written, without the mark."""
    event_dict.pop(ROUTINE, None)
    return event_dict


def routine_budget(
    per_second: int, clock: Callable[[], float] = time.monotonic
) -> structlog.types.Processor:
    """The processor that keeps routine lines within `per_second` a second per event (0: all)."""
    return RoutineBudget(per_second, clock) if per_second > 0 else _unmark_routine


def configure_logging(
    service: str,
    level: str = "INFO",
    log_format: str = LOG_FORMAT_JSON,
    *,
    routine_per_second: int = 0,
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """Send every log line (ours, uvicorn's, aiokafka's) to stdout, as one JSON object per line
    or, with `log_format` console (or auto on a terminal), as structlog's coloured console line.
    Routine lines are kept to `routine_per_second` per event a second (LOG_ROUTINE_PER_SECOND;
    0, the default here: every line), timed by `clock`.

    Our own lines (structlog) go straight to stdout as bytes, one write per line, and a line
    below the level costs a method call: going through the standard library's logging
    (LogRecord, handler lock, text encoding) was a fifth of a cached gateway read (issue 8).
    The libraries' lines keep going through the standard library, rendered the same way.
    """
    level_number = logging.getLevelNamesMapping()[level.upper()]
    budget = routine_budget(routine_per_second, clock)
    if resolved_log_format(log_format) == LOG_FORMAT_CONSOLE:
        _configure_console(service, level_number, budget)
        return
    shared_processors: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _add_service(service),
    ]
    structlog.configure(
        # The budget first: a dropped routine line costs no context merge, time stamp or render.
        processors=[
            budget,
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
    _route_standard_logging(handler, level_number)


def _configure_console(service: str, level_number: int, budget: structlog.types.Processor) -> None:
    """structlog's console renderer for our lines and the libraries' alike: time, level, the
    event, then its fields (service and correlation id among them), coloured when the console
    is a terminal or the stack asked for colour (FORCE_COLOR)."""
    colors = sys.stdout.isatty() or bool(os.environ.get("FORCE_COLOR"))
    shared_processors: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="%H:%M:%S.%f", utc=False),
        _add_service(service),
    ]
    renderer = structlog.dev.ConsoleRenderer(colors=colors, sort_keys=False)
    structlog.configure(
        processors=[budget, *shared_processors, renderer],
        logger_factory=structlog.PrintLoggerFactory(sys.stdout),
        wrapper_class=structlog.make_filtering_bound_logger(level_number),
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared_processors,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
    )
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(formatter)
    _route_standard_logging(handler, level_number)


def _route_standard_logging(handler: logging.Handler, level_number: int) -> None:
    """The standard library's loggers (uvicorn, aiokafka, ...) through our one handler."""
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
