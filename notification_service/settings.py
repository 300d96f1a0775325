"""The notification service's settings: the shared base plus outgoing mail and listing limits."""

from __future__ import annotations

from pydantic import Field, SecretStr, model_validator

from shared.services import NOTIFICATION
from shared.settings import ServiceSettings


class NotificationSettings(ServiceSettings):
    """Read from the environment and `.env` (see `.env.example`)."""

    service_name: str = NOTIFICATION.name
    port: int = Field(default=NOTIFICATION.port, ge=1, le=65535)

    # Outgoing mail. No SMTP_HOST and no known SMTP_SERVICE: email is off, notifications are
    # still stored.
    smtp_host: str = ""
    smtp_port: int | None = Field(default=None, ge=1, le=65535)
    smtp_mail: str = "no-reply@fleet.local"
    smtp_password: SecretStr | None = None
    smtp_service: str = ""
    smtp_from_name: str = "Fleet"
    # Each SMTP step (connect, greeting, each command) may take this long ...
    smtp_timeout_seconds: float = Field(default=10.0, gt=0)
    # ... and the whole exchange of one message this long: shorter than MAIL_LEASE_SECONDS, so
    # a slow server cannot keep a send going after its lease has passed to another sender.
    smtp_send_timeout_seconds: float = Field(default=30.0, gt=0)
    # Implicit TLS from the first byte (port 465); None lets SMTP_SERVICE decide, else off.
    smtp_use_tls: bool | None = None
    # STARTTLS: true requires it, false never tries, None upgrades when the server offers it.
    smtp_starttls: bool | None = None
    # Mail goes out over at most this many kept-open connections, one mail on each at a time.
    smtp_max_connections: int = Field(default=4, ge=1, le=100)
    # A connection idle this long is closed (servers drop idle clients, often after 60-300 s).
    smtp_connection_idle_seconds: float = Field(default=30.0, gt=0)

    # Mail delivery: a background sender claims due pending mail (a lease of MAIL_LEASE_SECONDS
    # keeps other replicas off it), retries a failure after MAIL_RETRY_BASE_SECONDS doubling up
    # to MAIL_RETRY_MAX_SECONDS, and gives up (failed) after MAIL_MAX_ATTEMPTS attempts.
    mail_retry_base_seconds: float = Field(default=2.0, gt=0)
    mail_retry_max_seconds: float = Field(default=300.0, gt=0)
    mail_max_attempts: int = Field(default=10, ge=1)
    mail_lease_seconds: float = Field(default=60.0, gt=0)
    # How often the sender looks for due mail when nothing new woke it.
    mail_poll_interval_seconds: float = Field(default=1.0, gt=0)
    # On shutdown the mail in hand gets this long; unfinished mail is retried after its lease.
    mail_shutdown_grace_seconds: float = Field(default=3.0, gt=0)

    notifications_page_limit: int = Field(default=100, ge=1)
    # How long an email's read-tracking pixel link marks its notification read.
    tracking_link_ttl_seconds: int = Field(default=7_776_000, ge=60)

    # Most consumed events stored together (one insert, one publish of their announcements).
    consumer_batch_max_records: int = Field(default=500, ge=1)

    @model_validator(mode="after")
    def _send_fits_in_its_lease(self) -> NotificationSettings:
        if self.smtp_send_timeout_seconds >= self.mail_lease_seconds:
            raise ValueError("SMTP_SEND_TIMEOUT_SECONDS must be shorter than MAIL_LEASE_SECONDS")
        if self.smtp_timeout_seconds > self.smtp_send_timeout_seconds:
            raise ValueError("SMTP_TIMEOUT_SECONDS must not exceed SMTP_SEND_TIMEOUT_SECONDS")
        return self
