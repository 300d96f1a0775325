"""What the local stack starts: the services (in start order) and the launcher options."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from shared.services import KAFKA_ADMIN, Service
from shared.services import SERVICES as REGISTERED_SERVICES

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MAIL_DIR = REPO_ROOT / "var" / "mail"
DEFAULT_READY_TIMEOUT_SECONDS = 60.0
DEFAULT_STOP_GRACE_SECONDS = 7.5
READY_POLL_INTERVAL_SECONDS = 0.2
READY_REQUEST_TIMEOUT_SECONDS = 2.0
JWT_SECRET_BYTES = 48

# Embedded parts listen here unless the port is taken (then on a free one).
DEFAULT_KAFKA_PORT = 9092
DEFAULT_REDIS_PORT = 6379
DEFAULT_SMTP_PORT = 2525
# The mail page of the SMTP sink: Mailpit's web port, as in compose.
DEFAULT_MAIL_PAGE_PORT = 8025

# Variables that point the stack at parts of one's own instead of the embedded ones.
PART_VARIABLES = (
    "KAFKA_BROKER",
    "REDIS_URL",
    "SMTP_HOST",
    "SMTP_PORT",
    "MONGO_URI",
    "JWT_SECRET",
    "PUBLIC_BASE_URL",
)


def environment_without_parts(environ: dict[str, str] | None = None) -> dict[str, str]:
    """The environment minus every part variable, so a child stack embeds all its parts."""
    source = os.environ if environ is None else environ
    return {k: v for k, v in source.items() if k not in PART_VARIABLES}


# The services and their contract ports come from the registry (shared/services.py), in start
# order: the admin service first, then the others together once it reports every topic created.
ADMIN = KAFKA_ADMIN
FLEET: tuple[Service, ...] = REGISTERED_SERVICES
SERVICES: tuple[Service, ...] = tuple(service for service in FLEET if service is not ADMIN)


def fleet_named(names: list[str] | None) -> tuple[Service, ...]:
    """The admin service plus the named services (all of them when `names` is empty)."""
    if not names:
        return FLEET
    known = {spec.name: spec for spec in FLEET}
    unknown = [name for name in names if name not in known]
    if unknown:
        raise ValueError(f"unknown services {unknown}; known: {sorted(known)}")
    return (ADMIN, *(spec for spec in SERVICES if spec.name in names))


@dataclass
class StackOptions:
    """The launcher's command line, resolved against the environment."""

    free_ports: bool = False
    state_file: Path | None = None
    mail_dir: Path = DEFAULT_MAIL_DIR
    ready_timeout: float = DEFAULT_READY_TIMEOUT_SECONDS
    stop_grace: float = DEFAULT_STOP_GRACE_SECONDS
    services: tuple[Service, ...] = FLEET
    environ: dict[str, str] = field(default_factory=lambda: dict(os.environ))

    @property
    def kafka_broker(self) -> str | None:
        """The broker the environment names (then no embedded broker starts)."""
        return self.environ.get("KAFKA_BROKER") or None

    @property
    def redis_url(self) -> str | None:
        """The Redis the environment names (then no embedded Redis starts)."""
        return self.environ.get("REDIS_URL") or None

    @property
    def smtp_host(self) -> str | None:
        """The SMTP server the environment names (then no sink starts)."""
        return self.environ.get("SMTP_HOST") or None


def new_jwt_secret() -> str:
    """A random signing key for a dev stack whose environment names none."""
    return secrets.token_urlsafe(JWT_SECRET_BYTES)
