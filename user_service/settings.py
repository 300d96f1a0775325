"""The user service's settings: the shared base plus its own limits."""

from __future__ import annotations

from pydantic import Field, model_validator

from shared.settings import ServiceSettings


class UserSettings(ServiceSettings):
    """Read from the environment and `.env` (see `.env.example`)."""

    service_name: str = "user_service"
    port: int = Field(default=5000, ge=1, le=65535)

    password_min_length: int = Field(default=8, ge=1)
    # Bounds the Argon2 work an anonymous caller can ask for.
    password_max_length: int = Field(default=128, ge=1)
    name_max_length: int = Field(default=100, ge=1)
    # How often an order event's write is retried (re-reading the user) when another order
    # change of the same user landed in between; then the bus's retries and DLQ take over.
    order_event_write_attempts: int = Field(default=5, ge=1)

    @model_validator(mode="after")
    def _password_bounds_ordered(self) -> UserSettings:
        if self.password_min_length > self.password_max_length:
            raise ValueError("PASSWORD_MIN_LENGTH must not exceed PASSWORD_MAX_LENGTH")
        return self
