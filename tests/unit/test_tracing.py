"""Tracing is off unless the standard variables ask for it, and then costs no import; URLs
lose their secrets before any exporter sees them."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from shared import tracing
from shared.events.envelope import Envelope


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


@pytest.fixture
def exported() -> Iterator[InMemorySpanExporter]:
    """Tracing on for one test, spans kept in memory."""
    exporter = InMemorySpanExporter()
    assert tracing.configure("unit", SimpleSpanProcessor(exporter))
    try:
        yield exporter
    finally:
        tracing.shutdown()


def _record(topic: str, offset: int, headers: list[tuple[str, bytes]]) -> SimpleNamespace:
    return SimpleNamespace(topic=topic, partition=2, offset=offset, headers=headers)


def test_a_batch_links_its_events_and_each_event_continues_its_own_trace(
    exported: InMemorySpanExporter,
) -> None:
    envelopes = [
        Envelope(type="OrderPlaced", source="test", correlation_id=f"c-{n}", data={})
        for n in range(2)
    ]
    sent = [tracing.start_send("order.placed", envelope) for envelope in envelopes]
    records = [_record("order.placed", n, headers) for n, (_, headers) in enumerate(sent)]
    for producer, _ in sent:
        tracing.end_send(producer, SimpleNamespace(partition=2, offset=0))

    carriers = []
    with tracing.processing(list(zip(records, envelopes, strict=True)), "user_service"):
        for envelope in envelopes:
            with tracing.event_scope(envelope):
                queued: dict[str, Any] = {}  # an outbox entry written for this event
                tracing.remember(queued)
                carriers.append(queued.get(tracing.TRACE_FIELD))

    spans = exported.get_finished_spans()
    by_event = {
        (s.attributes or {})["messaging.message.id"]: s
        for s in spans
        if s.name == "process order.placed" and not s.links
    }
    processed = [by_event[str(envelope.id)] for envelope in envelopes]
    [batch] = [s for s in spans if s.links]
    assert batch.kind == SpanKind.CONSUMER and len(batch.links) == 2
    for (producer, _), span, carrier in zip(sent, processed, carriers, strict=True):
        assert span.parent is not None
        assert span.parent.span_id == producer.get_span_context().span_id
        assert (span.attributes or {})["messaging.destination.partition.id"] == "2"
        assert (span.attributes or {})["messaging.consumer.group.name"] == "user_service"
        assert carrier is not None
        assert f"{span.context.span_id:016x}" in carrier["traceparent"]
        assert (
            carrier[tracing.CORRELATION_ATTRIBUTE]
            == (span.attributes or {})[tracing.CORRELATION_ATTRIBUTE]
        )


def test_a_graphql_operation_is_named_by_its_name_or_its_root_fields() -> None:
    from graphql import parse

    from graphql_gateway.tracing import root_fields

    document = parse("query A { me { id } } mutation B { placeOrder(x: 1) { id } other }")
    assert root_fields(document, "B") == ["placeOrder", "other"]
    assert root_fields(parse("{ getUserDetails { id } }"), None) == ["getUserDetails"]
