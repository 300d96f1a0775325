"""The settings base every service extends: one class, read from the environment and `.env`."""

from __future__ import annotations

import logging
from functools import cached_property

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

MIN_SECRET_LENGTH = 32


class ServiceSettings(BaseSettings):
    """Settings common to every service; each service adds only its own fields."""

    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", case_sensitive=False
    )

    service_name: str = "service"
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=1, le=65535)
    log_level: str = "INFO"

    kafka_broker: str = "127.0.0.1:9092"
    # Apache Kafka supports the idempotent producer; the embedded Tansu broker does not.
    kafka_idempotence: bool = False
    kafka_session_timeout_ms: int = Field(default=6000, ge=1000)
    # How long the broker may hold a fetch waiting for data. Apache Kafka answers as soon as
    # data arrives; Tansu holds every fetch this long, so the local stack sets 50 (issue 8:
    # at 500 each hop of an event chain added up to half a second).
    kafka_fetch_max_wait_ms: int = Field(default=500, ge=0)
    kafka_request_timeout_ms: int = Field(default=10_000, ge=1000)
    kafka_publish_timeout_seconds: float = Field(default=10, gt=0)
    kafka_handler_attempts: int = Field(default=3, ge=1)
    kafka_retry_backoff_seconds: float = Field(default=0.2, gt=0)
    kafka_startup_timeout_seconds: float = Field(default=60, gt=0)

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
