"""Tracing is off unless the standard variables ask for it, and then costs no import; URLs
lose their secrets before any exporter sees them."""

from __future__ import annotations

import subprocess
import sys

import pytest

from shared import tracing


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://jaeger:4318"}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://tempo:4318/v1/traces"}, True),
        ({"OTEL_TRACES_EXPORTER": "console"}, True),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://x"}, False),
        ({"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "otlp"}, False),
        ({"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.1"}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "  "}, False),
    ],
)
def test_tracing_is_requested_only_by_an_exporter_or_endpoint(
    environ: dict[str, str], expected: bool
) -> None:
    assert tracing.requested(environ) is expected


def test_signed_links_and_token_parameters_are_redacted() -> None:
    assert tracing.redact("/track/abc.def-ghi.gif") == "/track/REDACTED"
    assert (
        tracing.redact("http://gw:4000/unsubscribe/eyJhbGciOi.x.y?next=1")
        == "http://gw:4000/unsubscribe/REDACTED?next=1"
    )
    assert tracing.redact("/subscriptions/unsubscribe/tok") == "/subscriptions/unsubscribe/REDACTED"
    assert tracing.redact("a=1&token=s3cret&password=pw") == "a=1&token=REDACTED&password=REDACTED"
    assert tracing.redact("/orders/42/status") == "/orders/42/status"


def test_helpers_do_nothing_when_off() -> None:
    assert not tracing.enabled()
    assert tracing.current_carrier() is None
    document: dict[str, object] = {}
    tracing.remember(document)
    assert document == {}
    assert tracing.server_telemetry()["tracing"] is False
    with tracing.span("x") as span, tracing.continued("y", {"traceparent": "00-x"}) as other:
        assert span is None and other is None


_OFF_PROBE = """
import sys
from shared.serve import run_service  # what every service's __main__ imports
from graphql_gateway.main import create_app as gateway
from order_service.main import create_app as orders
from notification_service.main import create_app as notifications
from user_service.main import create_app as users
from shared import tracing
assert not tracing.configure("probe")
for create in (gateway, orders, notifications, users):
    create()
# (redis-py itself imports the SDK's metrics when the SDK is installed; the tracing part, the
# instrumentations and the exporters are ours to keep out.)
tracing_parts = (
    "opentelemetry.sdk.trace", "opentelemetry.instrumentation", "opentelemetry.exporter"
)
loaded = sorted(m for m in sys.modules if m.startswith(tracing_parts))
print(loaded)
assert not loaded, loaded
"""


def test_off_imports_neither_the_sdk_nor_an_instrumentation() -> None:
    env = {"JWT_SECRET": "x" * 40, "PATH": "/usr/bin:/bin"}
    done = subprocess.run(  # noqa: S603 - our own interpreter
        [sys.executable, "-c", _OFF_PROBE], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr
