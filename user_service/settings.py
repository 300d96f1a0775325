"""The user service's settings: the shared base plus its own limits."""

from __future__ import annotations

from pydantic import Field, field_validator, model_validator

from shared.auth import DEFAULT_HASH_CONCURRENCY, DEFAULT_HASH_QUEUE
from shared.ratelimit import parse_limit
from shared.services import USER
from shared.settings import ServiceSettings
from user_service.domain import InputLimits


class UserSettings(ServiceSettings):
    """Read from the environment and `.env` (see `.env.example`)."""

    service_name: str = USER.name
    port: int = Field(default=USER.port, ge=1, le=65535)

    password_min_length: int = Field(default=8, ge=1)
    # Bounds the Argon2 work an anonymous caller can ask for.
    password_max_length: int = Field(default=128, ge=1)
    name_max_length: int = Field(default=100, ge=1)
    # Argon2 hashes (64 MiB each) running at once in this process, and requests waiting for one;
    # past both, login and registration answer SERVICE_UNAVAILABLE at once. Size the first so
    # it times 64 MiB fits well inside the memory limit (deploy/k8s/user-service.yaml).
    password_hash_concurrency: int = Field(default=DEFAULT_HASH_CONCURRENCY, ge=1)
    password_hash_queue: int = Field(default=DEFAULT_HASH_QUEUE, ge=0)
    # How often an order event's write is retried (re-reading the user) when another order
    # change of the same user landed in between; then the bus's retries and DLQ take over.
    order_event_write_attempts: int = Field(default=5, ge=1)
    # Most order events handled together (one read and one write per user of the batch, one
    # publish of what they queue).
    order_event_batch_max_records: int = Field(default=500, ge=1)
    # Purchase history: how many purchases GET /users/me and GET /users/me/purchases give when
    # no `first` is asked for, and the most one page may hold.
    purchase_history_page_default: int = Field(default=20, ge=1)
    purchase_history_page_max: int = Field(default=100, ge=1)
    # How many of a user's newest orders answer a recommendation's purchase-history request
    # that names no window, and the most any request gets (the answer is also cut, oldest
    # first, to fit KAFKA_MAX_MESSAGE_BYTES).
    purchase_history_window_default: int = Field(default=20, ge=1)
    purchase_history_window_max: int = Field(default=100, ge=1)

    # Sessions: an access token lives ACCESS_TOKEN_TTL_SECONDS (a revoked session's tokens are
    # refused at the gateway before that); its refresh token expires after
    # REFRESH_TOKEN_TTL_SECONDS without use (each refresh rotates it and restarts the clock).
    access_token_ttl_seconds: int = Field(default=900, ge=60)
    refresh_token_ttl_seconds: int = Field(default=2_592_000, ge=60)
    # Used refresh tokens kept per session to recognise a replay (which ends the session).
    refresh_reuse_memory: int = Field(default=20, ge=1)
    # Most live sessions per user: a login past it ends the oldest (its tokens are revoked).
    max_sessions_per_user: int = Field(default=20, ge=1)
    # How often a write ending sessions is retried when the user's sessions changed meanwhile.
    session_write_attempts: int = Field(default=5, ge=1)
    # Links mailed to the user: verification (single use, replaced by a resend) and reset.
    email_verification_ttl_seconds: int = Field(default=86_400, ge=60)
    password_reset_ttl_seconds: int = Field(default=1_800, ge=60)

    # Rate limits of login and registration (in Redis; without REDIS_URL there are none), in
    # the `limits` notation: "<count>/<second|minute|hour|day>" or "<count> per <n> <unit>".
    redis_url: str | None = None
    login_limit_per_email: str = "10/minute"
    login_limit_per_address: str = "100/minute"
    register_limit_per_email: str = "5/minute"
    register_limit_per_address: str = "50/minute"
    # Mails with a link (password reset requests, verification resends), per address mailed.
    mail_link_limit_per_email: str = "5/hour"
    # Peers whose X-Forwarded-For names the client (the gateway); comma-separated addresses or
    # networks, "*" for any. Anyone else is the client themselves.
    trusted_proxies: str = "127.0.0.1"

    @field_validator(
        "login_limit_per_email",
        "login_limit_per_address",
        "register_limit_per_email",
        "register_limit_per_address",
        "mail_link_limit_per_email",
    )
    @classmethod
    def _limit_parses(cls, value: str) -> str:
        parse_limit(value)
        return value

    @model_validator(mode="after")
    def _password_bounds_ordered(self) -> UserSettings:
        if self.password_min_length > self.password_max_length:
            raise ValueError("PASSWORD_MIN_LENGTH must not exceed PASSWORD_MAX_LENGTH")
        return self

    @property
    def input_limits(self) -> InputLimits:
        """The length limits of a name and a new password, as the rules take them."""
        return InputLimits(
            password_min_length=self.password_min_length,
            password_max_length=self.password_max_length,
            name_max_length=self.name_max_length,
        )
