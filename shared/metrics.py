"""Prometheus metrics every service exports at `/metrics`."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

HTTP_REQUESTS = Counter(
    "http_requests_total", "HTTP requests served.", ["service", "method", "route", "status"]
)
HTTP_LATENCY = Histogram(
    "http_request_duration_seconds", "HTTP request latency.", ["service", "method", "route"]
)
MESSAGES_PRODUCED = Counter(
    "kafka_messages_produced_total", "Messages published.", ["service", "topic"]
)
MESSAGES_CONSUMED = Counter(
    "kafka_messages_consumed_total",
    "Messages consumed, by outcome (ok, retried, dead_lettered).",
    ["service", "topic", "outcome"],
)
HANDLER_LATENCY = Histogram(
    "kafka_handler_duration_seconds", "Time spent handling one message.", ["service", "topic"]
)
