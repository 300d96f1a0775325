"""Log lines: JSON for machines, readable console lines for a person, both with the service
name and the correlation id."""

from __future__ import annotations

import io
import json
import logging
import sys
from collections.abc import Iterator

import pytest
import structlog

from shared.logging import configure_logging, correlation_scope, get_logger, resolved_log_format


class _Stream(io.StringIO):
    def __init__(self, tty: bool) -> None:
        super().__init__()
        self._tty = tty

    def isatty(self) -> bool:
        return self._tty


@pytest.fixture
def logging_restored() -> Iterator[None]:
    """The process's logging configuration as it was before the test."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    structlog.reset_defaults()
    root.handlers[:] = handlers
    root.setLevel(level)


def printed_lines(capsys: pytest.CaptureFixture[str]) -> list[str]:
    sys.stdout.flush()
    return capsys.readouterr().out.strip().splitlines()


def test_auto_is_console_on_a_terminal_and_json_elsewhere() -> None:
    assert resolved_log_format("auto", _Stream(tty=True)) == "console"
    assert resolved_log_format("auto", _Stream(tty=False)) == "json"
    assert resolved_log_format("json", _Stream(tty=True)) == "json"
    assert resolved_log_format("console", _Stream(tty=False)) == "console"


@pytest.mark.usefixtures("logging_restored")
def test_json_lines_carry_service_and_correlation_id(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("order_service", "INFO", "json")
    with correlation_scope("corr-123"):
        get_logger("t").info("order placed", order_id="o-1")
    line = json.loads(printed_lines(capsys)[-1])
    assert line["event"] == "order placed"
    assert line["service"] == "order_service"
    assert line["correlation_id"] == "corr-123"
    assert line["order_id"] == "o-1"


@pytest.mark.usefixtures("logging_restored")
def test_console_lines_are_readable_and_carry_service_and_correlation_id(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging("order_service", "INFO", "console")
    with correlation_scope("corr-456"):
        get_logger("t").info("order placed", order_id="o-2")
    logging.getLogger("aiokafka").warning("library line")
    lines = printed_lines(capsys)
    ours = next(line for line in lines if "order placed" in line)
    assert not ours.lstrip().startswith("{")
    assert "service=order_service" in ours
    assert "correlation_id=corr-456" in ours
    assert "order_id=o-2" in ours
    assert any("library line" in line and "service=order_service" in line for line in lines)
