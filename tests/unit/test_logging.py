"""Log lines: JSON for machines, readable console lines for a person, both with the service
name and the correlation id; routine lines within LOG_ROUTINE_PER_SECOND, timed by a fake
clock."""

from __future__ import annotations

import io
import json
import logging

import pytest
from pydantic import ValidationError

from shared.logging import configure_logging, correlation_scope, get_logger, resolved_log_format
from shared.settings import ServiceSettings
from tests.fixtures.logs import budgeted, fresh_logger, printed_json, printed_lines
from tests.fixtures.parts import TEST_JWT_SECRET


class _Stream(io.StringIO):
    def __init__(self, tty: bool) -> None:
        super().__init__()
        self._tty = tty

    def isatty(self) -> bool:
        return self._tty


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


@pytest.mark.usefixtures("logging_restored")
def test_routine_lines_over_the_budget_are_dropped_and_counted_in_the_next_written_one(
    capsys: pytest.CaptureFixture[str],
) -> None:
    clock = budgeted(per_second=2)
    log = fresh_logger()
    for number in range(5):
        log.info("email sent", number=number, routine=True)
    log.info("order placed", routine=True)  # a budget of its own
    clock.now += 0.999
    log.info("email sent", number=5, routine=True)  # still the first window
    clock.now += 0.001
    log.info("email sent", number=6, routine=True)
    log.info("email sent", number=7, routine=True)
    log.info("email sent", number=8, routine=True)
    lines = printed_json(capsys)
    sent = [line for line in lines if line["event"] == "email sent"]
    assert [line["number"] for line in sent] == [0, 1, 6, 7]
    assert [line.get("suppressed") for line in sent] == [None, None, 4, None]
    assert all("routine" not in line for line in lines)
    assert [line["event"] for line in lines].count("order placed") == 1


@pytest.mark.usefixtures("logging_restored")
def test_warnings_errors_and_unmarked_lines_are_never_dropped(
    capsys: pytest.CaptureFixture[str],
) -> None:
    budgeted(per_second=1)
    log = fresh_logger()
    for _ in range(3):
        log.info("request", routine=True)
        log.info("request", status=404)
        log.warning("request", slow=True, routine=True)
        log.error("email failed", routine=True)
    events = [(line["event"], line["level"]) for line in printed_json(capsys)]
    assert events.count(("request", "info")) == 1 + 3
    assert events.count(("request", "warning")) == 3
    assert events.count(("email failed", "error")) == 3


@pytest.mark.usefixtures("logging_restored")
def test_a_budget_of_zero_writes_every_line(capsys: pytest.CaptureFixture[str]) -> None:
    budgeted(per_second=0)
    log = fresh_logger()
    for number in range(50):
        log.info("co-purchases counted", number=number, routine=True)
    lines = printed_json(capsys)
    assert [line["number"] for line in lines] == list(range(50))
    assert all("routine" not in line and "suppressed" not in line for line in lines)


@pytest.mark.usefixtures("logging_restored")
def test_written_routine_lines_keep_the_correlation_id(capsys: pytest.CaptureFixture[str]) -> None:
    clock = budgeted(per_second=1)
    log = fresh_logger()
    with correlation_scope("corr-1"):
        log.info("order placed", order_id="o-1", routine=True)
        log.info("order placed", order_id="o-2", routine=True)
    clock.now += 1
    with correlation_scope("corr-3"):
        log.info("order placed", order_id="o-3", routine=True)
    lines = printed_json(capsys)
    assert [(line["order_id"], line["correlation_id"]) for line in lines] == [
        ("o-1", "corr-1"),
        ("o-3", "corr-3"),
    ]
    assert lines[1]["suppressed"] == 1
    assert lines[1]["service"] == "order_service"


@pytest.mark.usefixtures("logging_restored")
def test_the_console_lines_have_the_same_budget(capsys: pytest.CaptureFixture[str]) -> None:
    clock = budgeted(per_second=1, log_format="console")
    log = fresh_logger()
    with correlation_scope("corr-9"):
        for _ in range(3):
            log.info("notifications stored", routine=True)
        clock.now += 1
        log.info("notifications stored", routine=True)
    lines = [line for line in printed_lines(capsys) if "notifications stored" in line]
    assert len(lines) == 2
    assert "suppressed=2" in lines[1]
    assert "correlation_id=corr-9" in lines[1]
    assert "routine" not in lines[0]


def test_the_budget_settings_have_their_defaults_and_refuse_a_negative_budget() -> None:
    settings = ServiceSettings(_env_file=None, jwt_secret=TEST_JWT_SECRET)
    assert settings.log_routine_per_second == 10
    assert settings.log_slow_request_ms == 500
    assert (
        ServiceSettings(
            _env_file=None, jwt_secret=TEST_JWT_SECRET, log_routine_per_second=0
        ).log_routine_per_second
        == 0
    )
    with pytest.raises(ValidationError):
        ServiceSettings(_env_file=None, jwt_secret=TEST_JWT_SECRET, log_routine_per_second=-1)
    with pytest.raises(ValidationError):
        ServiceSettings(_env_file=None, jwt_secret=TEST_JWT_SECRET, log_slow_request_ms=0)
