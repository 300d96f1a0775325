"""Prometheus metrics every service exports at `/metrics`."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

HTTP_REQUESTS = Counter(
    "http_requests_total", "HTTP requests served.", ["service", "method", "route", "status"]
)
HTTP_LATENCY = Histogram(
    "http_request_duration_seconds", "HTTP request latency.", ["service", "method", "route"]
)
MESSAGES_PRODUCED = Counter(
    "kafka_messages_produced_total", "Messages published.", ["service", "topic"]
)
MESSAGES_PRODUCE_FAILED = Counter(
    "kafka_messages_produce_failed_total",
    "Publishes the broker did not acknowledge (the caller keeps or retries the event).",
    ["service", "topic"],
)
MESSAGES_CONSUMED = Counter(
    "kafka_messages_consumed_total",
    "Messages consumed, by outcome (ok, retried, dead_lettered).",
    ["service", "topic", "outcome"],
)
HANDLER_LATENCY = Histogram(
    "kafka_handler_duration_seconds", "Time spent handling one message.", ["service", "topic"]
)
MESSAGES_FAILED = Counter(
    "kafka_messages_failed_total",
    "Consumed messages that failed for good, by reason: poison (not a valid envelope) or "
    "handler (still failing after its attempts); both go to the dead-letter topic.",
    ["service", "topic", "reason"],
)

# Exported by the kafka admin service, refreshed in the background.
CONSUMER_LAG = Gauge(
    "kafka_consumer_lag",
    "End offset minus committed offset, per registry consumer group and partition.",
    ["group", "topic", "partition"],
)
DLQ_DEPTH = Gauge("kafka_dlq_depth", "Messages held in a dead-letter topic.", ["topic"])
