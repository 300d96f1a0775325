"""The notification service's settings: the shared base plus outgoing mail and listing limits."""

from __future__ import annotations

from pydantic import Field, SecretStr

from shared.settings import ServiceSettings


class NotificationSettings(ServiceSettings):
    """Read from the environment and `.env` (see `.env.example`)."""

    service_name: str = "notification_service"
    port: int = Field(default=6000, ge=1, le=65535)

    # Outgoing mail. No SMTP_HOST and no known SMTP_SERVICE: email is off, notifications are
    # still stored.
    smtp_host: str = ""
    smtp_port: int | None = Field(default=None, ge=1, le=65535)
    smtp_mail: str = "no-reply@fleet.local"
    smtp_password: SecretStr | None = None
    smtp_service: str = ""
    smtp_from_name: str = "Fleet"
    smtp_timeout_seconds: float = Field(default=10.0, gt=0)
    # Implicit TLS from the first byte (port 465); None lets SMTP_SERVICE decide, else off.
    smtp_use_tls: bool | None = None
    # STARTTLS: true requires it, false never tries, None upgrades when the server offers it.
    smtp_starttls: bool | None = None

    notifications_page_limit: int = Field(default=100, ge=1)
