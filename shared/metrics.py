"""Prometheus metrics every service exports at `/metrics`."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

HTTP_REQUESTS = Counter(
    "http_requests_total", "HTTP requests served.", ["service", "method", "route", "status"]
)
HTTP_LATENCY = Histogram(
    "http_request_duration_seconds", "HTTP request latency.", ["service", "method", "route"]
)
HTTP_REFUSED = Counter(
    "http_requests_refused_total",
    "Requests answered 503 SERVICE_UNAVAILABLE at once because MAX_CONCURRENT_REQUESTS were in "
    "progress (and the queue was full or its wait ran out), or as many as the adapted limit "
    "(http_admission_limit, TARGET_REQUEST_SECONDS).",
    ["service"],
)
ADMISSION_LIMIT = Gauge(
    "http_admission_limit",
    "Requests the process takes in at once now: MAX_CONCURRENT_REQUESTS, or below it while "
    "requests take longer than TARGET_REQUEST_SECONDS.",
    ["service"],
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

# Outbox (shared/outbox.py), measured by each service's relay at every pass.
OUTBOX_PENDING = Gauge(
    "outbox_pending_documents",
    "Documents holding events not published yet, per service and collection.",
    ["service", "collection"],
)
OUTBOX_OLDEST_AGE = Gauge(
    "outbox_oldest_pending_age_seconds",
    "Age of the oldest event not published yet (0 when none), per service and collection.",
    ["service", "collection"],
)

# Mail (notification service's background sender).
MAIL_DELIVERIES = Counter(
    "mail_deliveries_total",
    "Emails by outcome: sent (the SMTP server took it), retrying (failed, tried again later), "
    "failed (gave up after MAIL_MAX_ATTEMPTS).",
    ["service", "outcome"],
)

# The cycle collector's pauses (shared/gc_tuning.py): every collection stops the process for
# its whole duration, so a long one shows as a latency spike on every request in flight.
GC_PAUSE = Histogram(
    "python_gc_pause_seconds",
    "Time the process stood still in one garbage collection, by generation (0 youngest).",
    ["service", "generation"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)

# Readiness, as the last GET /ready found it (probes call it: compose healthchecks, k8s).
SERVICE_READY = Gauge(
    "service_ready", "1 when the last readiness check passed, 0 when it failed.", ["service"]
)
