"""What the local stack starts: the services (in start order) and the launcher options."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
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


@dataclass(frozen=True, slots=True)
class ServiceSpec:
    """One service of the fleet: its package (run as `python -m <name>`) and contract port."""

    name: str
    port: int

    @property
    def url_env(self) -> str:
        """The variable that tells other services (the gateway) where this one listens."""
        return f"{self.name.upper()}_URL"


ADMIN = ServiceSpec("kafka_admin_service", 3000)
GATEWAY = ServiceSpec("graphql_gateway", 4000)
# Started together once the admin service reports every topic created.
SERVICES: tuple[ServiceSpec, ...] = (
    ServiceSpec("user_service", 5000),
    ServiceSpec("notification_service", 6000),
    ServiceSpec("order_service", 7000),
    ServiceSpec("recommendation_service", 8000),
    ServiceSpec("scheduler_service", 9000),
    GATEWAY,
)
FLEET: tuple[ServiceSpec, ...] = (ADMIN, *SERVICES)


def fleet_named(names: list[str] | None) -> tuple[ServiceSpec, ...]:
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
    services: tuple[ServiceSpec, ...] = FLEET
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
