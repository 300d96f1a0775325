"""With only the standard variables set, a service's spans leave over OTLP/HTTP: what compose
(to Jaeger) and `make run` (to a collector the user runs) rely on. The collector here is the
bench's stand-in."""

from __future__ import annotations

import pytest

from bench.trace_sink import TraceSink
from devstack.parts import free_port
from shared import tracing

pytestmark = pytest.mark.integration


def test_spans_are_exported_to_the_endpoint_the_environment_names(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sink = TraceSink(free_port()).start()
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", sink.endpoint)
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "always_on")
    try:
        assert tracing.configure("export-test")
        assert tracing.server_telemetry()["tracing"] is True
        with tracing.span("work", {"fleet.correlation_id": "c-1"}) as span:
            assert span is not None and span.is_recording()
    finally:
        tracing.shutdown()  # flushes the batch
        sink.stop()
    assert not tracing.enabled()
    assert sink.exports >= 1 and sink.received_bytes > 0


def test_sampling_follows_the_standard_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "console")
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "traceidratio")
    monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", "0")
    try:
        assert tracing.configure("sampling-test")
        with tracing.span("never sampled") as span:
            assert span is not None and not span.is_recording()
    finally:
        tracing.shutdown()


def test_background_passes_start_no_trace_of_their_own(monkeypatch: pytest.MonkeyPatch) -> None:
    from opentelemetry.instrumentation.utils import is_instrumentation_enabled

    with tracing.untraced():
        assert is_instrumentation_enabled()  # off: nothing to suppress
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "console")
    try:
        assert tracing.configure("background-test")
        with tracing.untraced():
            # Redis and PyMongo calls of a relay sweep or a mail poll make no spans...
            assert not is_instrumentation_enabled()
            # ...while a publish it carries on for a request still continues that trace.
            parent = {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}
            with tracing.continued("smtp send", parent) as span:
                assert span.is_recording()
                assert f"{span.get_span_context().trace_id:032x}" == parent["traceparent"][3:35]
    finally:
        tracing.shutdown()
