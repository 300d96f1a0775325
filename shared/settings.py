"""The settings base every service extends: one class, read from the environment and `.env`."""

from __future__ import annotations

import logging
import re
from functools import cached_property
from typing import Literal, Self

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

MIN_SECRET_LENGTH = 32
# Words of the example secrets (every `.env.example`, the Makefile's compose check, docs): a
# service started with one accepts tokens and links anyone with the repository can forge.
PLACEHOLDER_MARKERS = ("changeme", "placeholder", "replaceme", "example", "yoursecret")
RANDOM_KEY_COMMAND = "python3 -c 'import secrets; print(secrets.token_urlsafe(48))'"


def placeholder_marker(secret: str) -> str | None:
    """The placeholder word a secret contains, case and punctuation ignored (None: none)."""
    folded = re.sub(r"[^a-z0-9]", "", secret.lower())
    return next((marker for marker in PLACEHOLDER_MARKERS if marker in folded), None)


class ServiceSettings(BaseSettings):
    """Settings common to every service; each service adds only its own fields."""

    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", case_sensitive=False
    )

    service_name: str = "service"
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=1, le=65535)
    log_level: str = "INFO"
    # json: one JSON object a line (compose, k8s); console: readable coloured lines; auto:
    # console on a terminal, JSON anywhere else (the local stack asks for console on a terminal).
    log_format: Literal["auto", "json", "console"] = "auto"
    # Routine lines (a successful request, a per-item or per-batch success, marked `routine=True`
    # where logged) are written at most this many a second per event name and process; the
    # others are counted and the next one written carries `suppressed=<n>` (shared/logging.py).
    # Under load they were a tenth of the fleet's CPU. Warnings, errors and unmarked lines are
    # never dropped. 0: every line.
    log_routine_per_second: int = Field(default=10, ge=0)
    # A request slower than this is logged as a warning (`slow=true`), never budgeted.
    log_slow_request_ms: int = Field(default=500, gt=0)
    # The cycle collector's youngest generation runs every this many allocations (Python's
    # default 700 was a third of the gateway's CPU under load: shared/gc_tuning.py). 0: 700.
    gc_gen0_threshold: int = Field(default=50_000, ge=0)

    kafka_broker: str = "127.0.0.1:9092"
    # Apache Kafka supports the idempotent producer; the embedded Tansu broker does not.
    kafka_idempotence: bool = False
    kafka_session_timeout_ms: int = Field(default=6000, ge=1000)
    # How long the broker may hold a fetch waiting for data. Apache Kafka answers as soon as
    # data arrives; Tansu holds every fetch this long, so the local stack sets 50 (issue 8:
    # at 500 each hop of an event chain added up to half a second).
    kafka_fetch_max_wait_ms: int = Field(default=500, ge=0)
    kafka_request_timeout_ms: int = Field(default=10_000, ge=1000)
    # Handled offsets are committed at most this often while records keep coming (one request
    # for every partition), at once when a fetch comes back empty, before dozing, on a
    # partition's revocation and at stop; 0 commits after every fetch. A crash may deliver
    # again what was handled since the last commit (at least once: handlers are idempotent).
    kafka_commit_interval_ms: int = Field(default=1000, ge=0)
    kafka_publish_timeout_seconds: float = Field(default=10, gt=0)
    # No message the fleet publishes may be larger (key + value + headers, bytes): refused at
    # publish time, well under Kafka's 1 MiB default so a message never bounces off the broker.
    kafka_max_message_bytes: int = Field(default=524_288, ge=1024)
    # A handler failing for a reason that is not the message's fault (shared.failures) is
    # retried with exponential backoff from the first wait to the cap, holding its partition,
    # until it has failed for the horizon; then it is dead-lettered (shared/redelivery.py).
    kafka_retry_backoff_seconds: float = Field(default=0.2, gt=0)
    kafka_retry_backoff_max_seconds: float = Field(default=30.0, gt=0)
    kafka_retry_horizon_seconds: float = Field(default=900.0, gt=0)
    kafka_startup_timeout_seconds: float = Field(default=60, gt=0)
    # A consumer with nothing for this long dozes: its partitions paused, it looks again every
    # KAFKA_IDLE_POLL_SECONDS or when a publisher's wake-up (Redis) names one of them
    # (shared/wakeups.py). 0 never dozes: on Apache Kafka a long poll costs little; the local
    # stack sets it because Tansu holds every fetch for the whole fetch wait.
    kafka_idle_after_seconds: float = Field(default=0, ge=0)
    kafka_idle_poll_seconds: float = Field(default=5.0, gt=0)
    kafka_wake_throttle_seconds: float = Field(default=0.5, gt=0)

    # Redis: what each service uses it for is in its own settings' comments; every service
    # with one also carries consumers' wake-ups on it.
    redis_url: str | None = None
    redis_timeout_seconds: float = Field(default=1.0, gt=0)

    # Admission at the edge of the process (shared/http.py): at most this many requests in
    # progress; one more waits at most MAX_QUEUE_WAIT_SECONDS among at most
    # MAX_QUEUED_REQUESTS others, else it is answered 503 SERVICE_UNAVAILABLE (Retry-After) at
    # once. Sized for one process on one core: enough to keep it busy (the bench holds 50
    # connections), few enough that a saturated process still answers what it took inside a
    # second (it works through its requests in progress at its own rate: 64 at 77 placeOrder
    # a second is 0.8 s; at 65 a second, on a slower machine, 1 s, hence the gateway's
    # TARGET_REQUEST_SECONDS below).
    max_concurrent_requests: int = Field(default=64, ge=1)
    max_queued_requests: int = Field(default=64, ge=0)
    max_queue_wait_seconds: float = Field(default=0.1, ge=0)
    # While the requests taken in take longer than this on average, fewer are taken in at once
    # (down to MIN_CONCURRENT_REQUESTS; shared/latency_limit.py), more again while they don't:
    # the limit that keeps answers in time on a slow machine and a fast one. 0: fixed.
    target_request_seconds: float = Field(default=0, ge=0)
    min_concurrent_requests: int = Field(default=16, ge=1)

    mongo_uri: str = "memory://"
    mongo_database: str = ""

    jwt_secret: SecretStr
    jwt_issuer: str = "fleet"

    admin_emails: str = ""
    public_base_url: str = "http://localhost:4000"
    outbox_relay_interval_seconds: float = Field(default=2.0, gt=0)
    # How long a write waits to publish its own events before leaving them to the relay: keeps
    # requests (and handlers) answering during a broker outage, well inside the gateway's
    # downstream timeout.
    outbox_flush_timeout_seconds: float = Field(default=2.0, gt=0)

    @field_validator("log_level")
    @classmethod
    def _known_log_level(cls, value: str) -> str:
        level = value.strip().upper()
        if level not in logging.getLevelNamesMapping():
            raise ValueError("LOG_LEVEL must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL")
        return level

    @field_validator("jwt_secret")
    @classmethod
    def _secret_long_enough(cls, value: SecretStr) -> SecretStr:
        if len(value.get_secret_value()) < MIN_SECRET_LENGTH:
            raise ValueError(f"JWT_SECRET must be at least {MIN_SECRET_LENGTH} characters long")
        return value

    @model_validator(mode="after")
    def _no_example_secret(self) -> Self:
        for name, value in self:
            if isinstance(value, SecretStr):
                marker = placeholder_marker(value.get_secret_value())
                if marker is not None:
                    raise ValueError(
                        f"{name.upper()} is an example placeholder (it contains {marker!r}); "
                        f"set it to a random secret, e.g. the output of {RANDOM_KEY_COMMAND} "
                        "(`make run` generates one when it is unset)"
                    )
        return self

    @model_validator(mode="after")
    def _retry_backoff_in_order(self) -> Self:
        if self.kafka_retry_backoff_max_seconds < self.kafka_retry_backoff_seconds:
            raise ValueError(
                "KAFKA_RETRY_BACKOFF_MAX_SECONDS must be at least KAFKA_RETRY_BACKOFF_SECONDS"
            )
        return self

    @model_validator(mode="after")
    def _wake_throttle_inside_idle_time(self) -> Self:
        if self.kafka_idle_after_seconds and (
            self.kafka_wake_throttle_seconds >= self.kafka_idle_after_seconds
        ):
            # A throttled wake-up is safe only when its partition's reader cannot be dozing.
            raise ValueError(
                "KAFKA_WAKE_THROTTLE_SECONDS must be shorter than KAFKA_IDLE_AFTER_SECONDS"
            )
        return self

    @cached_property
    def admin_email_set(self) -> frozenset[str]:
        """ADMIN_EMAILS parsed: lower-case, blanks dropped."""
        return frozenset(
            email.strip().lower() for email in self.admin_emails.split(",") if email.strip()
        )

    @property
    def database_name(self) -> str:
        """The MongoDB database this service owns (defaults to the service name)."""
        return self.mongo_database or self.service_name
