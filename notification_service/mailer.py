"""Sending email over SMTP with aiosmtplib; where the server is comes from the settings."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from email.message import EmailMessage

import aiosmtplib

from notification_service.settings import NotificationSettings
from shared.logging import get_logger

log = get_logger(__name__)

SMTP_PORT = 587
SMTPS_PORT = 465


@dataclass(frozen=True, slots=True)
class KnownService:
    """A well-known provider named by SMTP_SERVICE (as nodemailer's `service` option)."""

    host: str
    port: int
    use_tls: bool


KNOWN_SERVICES: dict[str, KnownService] = {
    "gmail": KnownService("smtp.gmail.com", SMTPS_PORT, use_tls=True),
    "outlook": KnownService("smtp-mail.outlook.com", SMTP_PORT, use_tls=False),
    "hotmail": KnownService("smtp-mail.outlook.com", SMTP_PORT, use_tls=False),
    "office365": KnownService("smtp.office365.com", SMTP_PORT, use_tls=False),
    "yahoo": KnownService("smtp.mail.yahoo.com", SMTPS_PORT, use_tls=True),
    "icloud": KnownService("smtp.mail.me.com", SMTP_PORT, use_tls=False),
    "zoho": KnownService("smtp.zoho.com", SMTPS_PORT, use_tls=True),
    "sendgrid": KnownService("smtp.sendgrid.net", SMTP_PORT, use_tls=False),
    "mailgun": KnownService("smtp.mailgun.org", SMTP_PORT, use_tls=False),
}


class MailError(Exception):
    """An email could not be handed to the SMTP server."""


@dataclass(frozen=True, slots=True)
class SmtpEndpoint:
    """Where and how to send."""

    host: str
    port: int
    use_tls: bool
    start_tls: bool | None
    timeout: float  # each step
    send_timeout: float  # the whole exchange of one message
    username: str | None
    password: str | None


def resolve_endpoint(settings: NotificationSettings) -> SmtpEndpoint | None:
    """SMTP_HOST wins; else a known SMTP_SERVICE; else None (email is off)."""
    known = KNOWN_SERVICES.get(settings.smtp_service.strip().lower())
    if settings.smtp_host:
        host, service_tls = settings.smtp_host, False
    elif known is not None:
        host, service_tls = known.host, known.use_tls
    else:
        return None
    use_tls = settings.smtp_use_tls if settings.smtp_use_tls is not None else service_tls
    default_port = known.port if known and not settings.smtp_host else None
    port = settings.smtp_port or default_port or (SMTPS_PORT if use_tls else SMTP_PORT)
    password = settings.smtp_password.get_secret_value() if settings.smtp_password else None
    return SmtpEndpoint(
        host=host,
        port=port,
        use_tls=use_tls,
        start_tls=False if use_tls else settings.smtp_starttls,
        timeout=settings.smtp_timeout_seconds,
        send_timeout=settings.smtp_send_timeout_seconds,
        username=settings.smtp_mail if password else None,
        password=password,
    )


class Mailer:
    """Hands messages to the configured SMTP server (one connection per message)."""

    def __init__(self, settings: NotificationSettings) -> None:
        self.sender = settings.smtp_mail
        self.sender_name = settings.smtp_from_name
        self.endpoint = resolve_endpoint(settings)
        if self.endpoint is None:
            log.info("email is disabled: neither SMTP_HOST nor a known SMTP_SERVICE is set")
        elif settings.smtp_service and not settings.smtp_host:
            log.info("email via known service", service=settings.smtp_service)

    @property
    def enabled(self) -> bool:
        """Whether there is an SMTP server to send to."""
        return self.endpoint is not None

    async def send(self, message: EmailMessage) -> None:
        """Send one message within the overall send timeout; any failure to deliver it to the
        server (a timeout included) is a MailError."""
        endpoint = self.endpoint
        if endpoint is None:
            raise MailError("email is disabled")
        # Not aiosmtplib.send: when cancelled, its context manager still waits for QUIT (up to
        # a step timeout), and the exchange would outlast the overall timeout, hence the lease.
        client = aiosmtplib.SMTP(
            hostname=endpoint.host,
            port=endpoint.port,
            use_tls=endpoint.use_tls,
            start_tls=endpoint.start_tls,
            timeout=endpoint.timeout,  # each step
            username=endpoint.username,
            password=endpoint.password,
        )
        accepted = False
        try:
            async with asyncio.timeout(endpoint.send_timeout):  # the whole exchange
                await client.connect()
                await client.send_message(message)
                accepted = True
                await client.quit()
        except (aiosmtplib.SMTPException, OSError, TimeoutError, ValueError) as exc:
            if not accepted:
                raise MailError(f"{type(exc).__name__}: {exc}") from exc
            # The server took the message: a failed goodbye must not send it again.
        finally:
            client.close()
