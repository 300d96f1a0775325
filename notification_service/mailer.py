"""Sending email over SMTP: aiosmtplib opens the sessions (TLS, login), mail_session.py carries
the mails on them (pipelined where the server offers it); where the server is comes from the
settings."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import aiosmtplib

from notification_service.emails import OutgoingMail
from notification_service.mail_session import MailSession, SessionLost
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
    """Hands messages to the configured SMTP server over a few kept-open connections.

    Up to SMTP_MAX_CONNECTIONS logged-in connections serve one mail after the other. A
    connection that failed in any way, or was cut by a timeout or a cancel, is closed and never
    used again; one idle for SMTP_CONNECTION_IDLE_SECONDS is closed before a server drops it.
    """

    def __init__(self, settings: NotificationSettings) -> None:
        self.sender = settings.smtp_mail
        self.sender_name = settings.smtp_from_name
        self.endpoint = resolve_endpoint(settings)
        self.max_connections = settings.smtp_max_connections
        self.idle_seconds = settings.smtp_connection_idle_seconds
        self._idle: list[_Connection] = []  # the most recently used last
        self._free_slots = asyncio.Semaphore(self.max_connections)
        self.connections_opened = 0
        if self.endpoint is None:
            log.info("email is disabled: neither SMTP_HOST nor a known SMTP_SERVICE is set")
        elif settings.smtp_service and not settings.smtp_host:
            log.info("email via known service", service=settings.smtp_service)

    @property
    def enabled(self) -> bool:
        """Whether there is an SMTP server to send to."""
        return self.endpoint is not None

    async def send(self, mail: OutgoingMail) -> None:
        """Send one mail within the overall send timeout (waiting for a connection included);
        any failure to deliver it to the server (a timeout included) is a MailError."""
        endpoint = self.endpoint
        if endpoint is None:
            raise MailError("email is disabled")
        try:
            async with asyncio.timeout(endpoint.send_timeout), self._free_slots:
                await self._send_on_a_connection(endpoint, mail)
        except (aiosmtplib.SMTPException, OSError, TimeoutError, ValueError) as exc:
            raise MailError(f"{type(exc).__name__}: {exc}") from exc

    async def _send_on_a_connection(self, endpoint: SmtpEndpoint, mail: OutgoingMail) -> None:
        connection = self._reusable_connection()
        reused = connection is not None
        if connection is None:
            connection = await self._open(endpoint)
        try:
            try:
                await connection.session.send(mail)
            except SessionLost:
                if not reused:
                    raise
                # The server ended the kept session before this mail's content went over:
                # nothing of it was handed over, so a new connection may carry it.
                connection.session.close()
                connection = await self._open(endpoint)
                await connection.session.send(mail)
        except BaseException:
            # Never reused after a failure mid-exchange: its state is unknown. (Nothing can
            # fail once the content was accepted, so a mail the server took is never retried.)
            connection.session.close()
            raise
        connection.last_used = time.monotonic()
        self._idle.append(connection)

    @property
    def kept_connections(self) -> int:
        """Connections open and waiting for the next mail."""
        return len(self._idle)

    def _reusable_connection(self) -> _Connection | None:
        self.close_idle()
        while self._idle:
            connection = self._idle.pop()
            if connection.session.is_open:
                return connection
            connection.session.close()
        return None

    async def _open(self, endpoint: SmtpEndpoint) -> _Connection:
        client = aiosmtplib.SMTP(
            hostname=endpoint.host,
            port=endpoint.port,
            use_tls=endpoint.use_tls,
            start_tls=endpoint.start_tls,
            timeout=endpoint.timeout,  # each step
            username=endpoint.username,
            password=endpoint.password,
        )
        try:
            await client.connect()  # greeting, EHLO, STARTTLS and login as configured
            session = await MailSession.take_over(client, endpoint.timeout)
        except BaseException:
            client.close()
            raise
        self.connections_opened += 1
        return _Connection(session, time.monotonic())

    def close_idle(self) -> None:
        """Close the connections idle longer than SMTP_CONNECTION_IDLE_SECONDS."""
        cutoff = time.monotonic() - self.idle_seconds
        stale = [c for c in self._idle if c.last_used < cutoff]
        if stale:
            self._idle = [c for c in self._idle if c.last_used >= cutoff]
            for connection in stale:
                connection.session.close()

    def close(self) -> None:
        """Close every kept connection (no QUIT: a stopping service does not wait on SMTP)."""
        idle, self._idle = self._idle, []
        for connection in idle:
            connection.session.close()


@dataclass(slots=True)
class _Connection:
    session: MailSession
    last_used: float
