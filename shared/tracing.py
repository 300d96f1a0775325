"""OpenTelemetry traces across HTTP and Kafka; off (nothing imported, nothing recorded) unless
`OTEL_EXPORTER_OTLP_ENDPOINT`, `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` or `OTEL_TRACES_EXPORTER` is
set. Sampling follows the standard `OTEL_TRACES_SAMPLER` and `OTEL_TRACES_SAMPLER_ARG`.

HTTP: FastAPI's own telemetry makes the server spans (`server_telemetry`), the httpx
instrumentation the client spans and carries the context in `traceparent`; Redis and PyMongo
are instrumented too. Kafka: the context travels in the record's headers, written here by the
fleet's publisher and read by its consumer (the aiokafka instrumentation would see neither the
outbox, which publishes later in another task, nor the batches a handler takes at once). Work
that goes on later elsewhere (an outbox entry, a mail to send) keeps the context of the work
that queued it in the stored document (`remember`), and continues that trace (`continued`).

Attributes name what a reader needs to find a request (correlation id, operation, topic,
partition) and never a value: no token (paths and queries are redacted before export), no
password, no email address or body.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator, Mapping, MutableMapping, Sequence
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from shared.logging import current_correlation_id, get_logger

if TYPE_CHECKING:
    import httpx
    from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
    from opentelemetry.trace import Span, Tracer

    from shared.events.envelope import Envelope

log = get_logger(__name__)

ENABLING_VARIABLES = (
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_TRACES_EXPORTER",
)
# Where a stored document keeps the context of the work that wrote it (W3C trace context).
TRACE_FIELD = "trace"
CORRELATION_ATTRIBUTE = "fleet.correlation_id"
# Requests that are not worth a trace (probes, scrapes).
UNTRACED_PATHS = frozenset({"/health", "/ready", "/metrics"})

# Path segments that are secrets (signed links in emails), and query values that may be.
_SECRET_PATH = re.compile(r"(/(?:track|unsubscribe)/)[^/?#]+")
_SECRET_QUERY = re.compile(r"((?:token|password|secret|key|code|signature)=)[^&#]*", re.I)
_URL_ATTRIBUTES = ("url.full", "url.path", "url.query", "http.url", "http.target")

_provider: TracerProvider | None = None
_tracer: Tracer | None = None
# The span of each event of the batch in hand (bus), for `event_scope`.
_event_spans: ContextVar[Mapping[str, Span] | None] = ContextVar("event_spans", default=None)


def requested(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether the environment asks for traces (the standard OTEL_* variables)."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporter = environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporter == "none":
        return False
    return any(environ.get(name, "").strip() for name in ENABLING_VARIABLES)


def enabled() -> bool:
    """Whether this process records traces."""
    return _tracer is not None


def configure(service_name: str, processor: SpanProcessor | None = None) -> bool:
    """Set up tracing for this process when the environment asks for it (or a `processor` is
    given: tests pass an in-memory exporter's); returns whether tracing is on.

    Builds the provider (resource `service.name`, the environment's sampler), the exporter
    named by OTEL_TRACES_EXPORTER (`otlp` over HTTP, the default, or `console`), and
    instruments httpx, Redis and PyMongo. FastAPI apps created afterwards trace their requests.
    """
    global _provider, _tracer
    if _tracer is not None:
        return True
    if processor is None and not requested():
        return False
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
    from opentelemetry.instrumentation.pymongo import PymongoInstrumentor
    from opentelemetry.instrumentation.redis import RedisInstrumentor
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider

    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    provider.add_span_processor(_redactor())
    provider.add_span_processor(processor or _exporting_processor())
    # Our own provider, not the global one: tests switch tracing on and off in one process.
    HTTPXClientInstrumentor().instrument(tracer_provider=provider)
    RedisInstrumentor().instrument(tracer_provider=provider)
    PymongoInstrumentor().instrument(tracer_provider=provider)
    _provider, _tracer = provider, provider.get_tracer("fleet")
    log.info("tracing on", service=service_name)
    return True


def instrument_http_client(client: httpx.AsyncClient) -> None:
    """Client spans and trace headers on this client's calls, whatever its transport (when
    tracing is on)."""
    if _provider is None:
        return
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

    HTTPXClientInstrumentor.instrument_client(client, tracer_provider=_provider)


def shutdown() -> None:
    """Export what is buffered and switch tracing off (process exit; tests)."""
    global _provider, _tracer
    provider, _provider, _tracer = _provider, None, None
    if provider is None:
        return
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
    from opentelemetry.instrumentation.pymongo import PymongoInstrumentor
    from opentelemetry.instrumentation.redis import RedisInstrumentor

    for instrumentor in (HTTPXClientInstrumentor, RedisInstrumentor, PymongoInstrumentor):
        instrumentor().uninstrument()
    provider.shutdown()


def _exporting_processor() -> SpanProcessor:
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

    name = os.environ.get("OTEL_TRACES_EXPORTER", "").strip().lower() or "otlp"
    if name == "console":
        return BatchSpanProcessor(ConsoleSpanExporter())
    if name != "otlp":
        log.warning("unknown OTEL_TRACES_EXPORTER; exporting with OTLP", exporter=name)
    # OTLP over HTTP (protobuf): the endpoint and headers come from the OTEL_EXPORTER_OTLP_*
    # variables; Jaeger and Tempo both take it on port 4318.
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return BatchSpanProcessor(OTLPSpanExporter())


def redact(value: str) -> str:
    """A URL, path or query without its secrets (signed-link tokens, token-like parameters)."""
    return _SECRET_QUERY.sub(r"\1REDACTED", _SECRET_PATH.sub(r"\1REDACTED", value))


def _redactor() -> SpanProcessor:
    from opentelemetry.sdk.trace import SpanProcessor

    class Redactor(SpanProcessor):
        """Rewrites URL attributes as spans start (FastAPI's and httpx's spans set them then)
        and tags each span with the correlation id of the work in hand."""

        def on_start(self, span: Any, parent_context: Any = None) -> None:
            attributes = span.attributes or {}
            for name in _URL_ATTRIBUTES:
                value = attributes.get(name)
                if isinstance(value, str):
                    cleaned = redact(value)
                    if cleaned != value:
                        span.set_attribute(name, cleaned)
            correlation_id = current_correlation_id()
            if correlation_id and CORRELATION_ATTRIBUTE not in attributes:
                span.set_attribute(CORRELATION_ATTRIBUTE, correlation_id)

    return Redactor()


def server_telemetry() -> Any:
    """The `telemetry=` of a service's FastAPI app: server spans when tracing is on (not the
    probes), nothing otherwise (FastAPI's hooks cost a little on every request even unused)."""
    if _provider is None:
        return {"tracing": False, "metrics": False, "logs": False}
    return {
        "tracer_provider": _provider,
        "tracing": True,
        "metrics": False,
        "logs": False,
        "operation_spans": False,
        "exclude": lambda scope: scope.get("path") in UNTRACED_PATHS,
    }


def tag_correlation(correlation_id: str) -> None:
    """Put the correlation id on the current span (a request's server span starts before the
    id is known)."""
    if _tracer is not None:  # on every request: not even a dict when off
        annotate({CORRELATION_ATTRIBUTE: correlation_id})


def annotate(attributes: Mapping[str, Any]) -> None:
    """Add attributes to the current span (nothing when tracing is off)."""
    if _tracer is None:
        return
    from opentelemetry import trace

    trace.get_current_span().set_attributes(attributes)


@contextlib.contextmanager
def span(name: str, attributes: Mapping[str, Any] | None = None) -> Iterator[Any]:
    """An internal span, current for the body (None when tracing is off)."""
    if _tracer is None:
        yield None
        return
    with _tracer.start_as_current_span(name, attributes=attributes) as current:
        yield current


@contextlib.contextmanager
def untraced() -> Iterator[None]:
    """Background passes (the outbox relay's sweep, the mail sender's polling): their own
    database and Redis calls would each start a trace every few seconds. The work they carry on
    for a request (a publish, a send) still continues that request's trace."""
    if _tracer is None:
        yield
        return
    from opentelemetry.instrumentation.utils import suppress_instrumentation

    with suppress_instrumentation():
        yield


# --- work that goes on later: stored contexts ---------------------------------------------------


def current_carrier() -> dict[str, str] | None:
    """The current trace context as W3C headers (to store with queued work); None when off or
    when nothing is being traced."""
    if _tracer is None:
        return None
    from opentelemetry import propagate

    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier or None


def remember(document: MutableMapping[str, Any]) -> None:
    """Keep the current trace context in a document about to be stored (outbox entry, mail)."""
    if _tracer is None:
        return
    carrier = current_carrier()
    if carrier:
        # Beside the W3C headers (extract ignores it): the span that continues carries it too.
        correlation_id = current_correlation_id()
        if correlation_id:
            carrier[CORRELATION_ATTRIBUTE] = correlation_id
        document[TRACE_FIELD] = carrier


@contextlib.contextmanager
def continued(
    name: str, carrier: Mapping[str, str] | None, attributes: Mapping[str, Any] | None = None
) -> Iterator[Any]:
    """A client span continuing the trace whose context `carrier` holds (the SMTP send of a
    stored mail), current for the body; None when tracing is off."""
    if _tracer is None:
        yield None
        return
    from opentelemetry import propagate
    from opentelemetry.trace import SpanKind

    parent = propagate.extract(carrier or {})
    correlation_id = (carrier or {}).get(CORRELATION_ATTRIBUTE)
    if correlation_id:
        attributes = {**(attributes or {}), CORRELATION_ATTRIBUTE: correlation_id}
    # Not the exception's message: an SMTP server's answer may quote the address.
    with _tracer.start_as_current_span(
        name,
        context=parent,
        kind=SpanKind.CLIENT,
        attributes=attributes,
        record_exception=False,
        set_status_on_exception=False,
    ) as current:
        try:
            yield current
        except Exception as exc:
            _failed(current, exc)
            raise


def _failed(failed_span: Any, exc: BaseException) -> None:
    from opentelemetry.trace import StatusCode

    failed_span.set_status(StatusCode.ERROR, type(exc).__name__)
    failed_span.set_attribute("error.type", type(exc).__name__)


# --- Kafka: the context in the record's headers -------------------------------------------------


def _messaging(topic: str, envelope: Envelope, operation: str) -> dict[str, Any]:
    return {
        "messaging.system": "kafka",
        "messaging.operation.type": operation,
        "messaging.destination.name": topic,
        "messaging.message.id": str(envelope.id),
        "messaging.message.conversation_id": envelope.correlation_id,
        "fleet.event_type": envelope.type,
        CORRELATION_ATTRIBUTE: envelope.correlation_id,
    }


def start_send(
    topic: str, envelope: Envelope, carrier: Mapping[str, str] | None = None
) -> tuple[Any, list[tuple[str, bytes]]]:
    """A producer span for one record (child of the stored context `carrier`, else of the
    current one) and the headers carrying it; (None, []) when tracing is off."""
    if _tracer is None:
        return None, []
    from opentelemetry import propagate, trace
    from opentelemetry.trace import SpanKind

    parent = propagate.extract(carrier) if carrier else None
    producer = _tracer.start_span(
        f"send {topic}",
        context=parent,
        kind=SpanKind.PRODUCER,
        attributes=_messaging(topic, envelope, "send"),
    )
    headers: dict[str, str] = {}
    propagate.inject(headers, context=trace.set_span_in_context(producer))
    return producer, [(name, value.encode()) for name, value in headers.items()]


def end_send(producer: Any, outcome: Any) -> None:
    """End a producer span with the broker's answer: record metadata (partition, offset) or the
    error."""
    if producer is None:
        return
    if isinstance(outcome, BaseException):
        _failed(producer, outcome)
    elif outcome is not None:
        producer.set_attribute("messaging.destination.partition.id", str(outcome.partition))
        producer.set_attribute("messaging.kafka.offset", outcome.offset)
    producer.end()


def _record_context(headers: Sequence[tuple[str, bytes]] | None) -> Any:
    from opentelemetry import propagate

    carrier = {name: value.decode("latin-1") for name, value in headers or () if value}
    return propagate.extract(carrier)


def _start_process(record: Any, envelope: Envelope, group: str | None) -> Any:
    from opentelemetry.trace import SpanKind

    assert _tracer is not None
    attributes = _messaging(record.topic, envelope, "process")
    attributes["messaging.destination.partition.id"] = str(record.partition)
    attributes["messaging.kafka.offset"] = record.offset
    if group:
        attributes["messaging.consumer.group.name"] = group
    return _tracer.start_span(
        f"process {record.topic}",
        context=_record_context(record.headers),
        kind=SpanKind.CONSUMER,
        attributes=attributes,
    )


@contextlib.contextmanager
def processing(received: Sequence[tuple[Any, ...]], group: str | None) -> Iterator[None]:
    """Consumer spans for records being handled (`(record, envelope, ...)` each), each a
    child of the producer's span in its headers. One record: its span is current. A batch: a
    span linked to every record's is current, and `event_scope(envelope)` makes one record's
    span current for the work done for that event. Failures mark the spans."""
    if _tracer is None or not received:
        yield
        return
    from opentelemetry import trace
    from opentelemetry.trace import Link

    spans = {str(item[1].id): _start_process(item[0], item[1], group) for item in received}
    if len(spans) == 1:
        [current] = spans.values()
    else:
        topic = received[0][0].topic
        current = _tracer.start_span(
            f"process {topic}",
            kind=trace.SpanKind.CONSUMER,
            links=[Link(s.get_span_context()) for s in spans.values()],
            attributes={
                "messaging.system": "kafka",
                "messaging.operation.type": "process",
                "messaging.destination.name": topic,
                "messaging.batch.message_count": len(spans),
            },
        )
    # Each record's span, then the batch's (when there is one), in a stable order.
    every = [*spans.values(), *([] if len(spans) == 1 else [current])]
    token = _event_spans.set(spans)
    try:
        with trace.use_span(
            current, end_on_exit=False, record_exception=False, set_status_on_exception=False
        ):
            yield
    except BaseException as exc:
        for each in every:
            _failed(each, exc)
        raise
    finally:
        _event_spans.reset(token)
        for each in every:
            each.end()


@contextlib.contextmanager
def event_scope(envelope: Envelope) -> Iterator[None]:
    """Work done for one consumed event (inside a batch): its correlation id bound and its
    consumer span current, so what it queues (outbox entries, mail) continues its trace."""
    from shared.logging import correlation_scope

    with correlation_scope(envelope.correlation_id):
        spans = _event_spans.get() if _tracer is not None else None
        event_span = spans.get(str(envelope.id)) if spans else None
        if event_span is None:
            yield
            return
        from opentelemetry import trace

        with trace.use_span(event_span, end_on_exit=False):
            yield
