"""Where the fleet is: each service's base URL and the broker, from the launcher's state file
(`python -m devstack --state-file ...`) or the contract's default ports."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from shared.services import GATEWAY, KAFKA_ADMIN, SERVICES, USER

DEFAULT_HOST = "127.0.0.1"
DEFAULT_BROKER = "127.0.0.1:9092"
# The local stack's mail page (Mailpit's web port in compose).
DEFAULT_MAIL_PAGE_PORT = 8025
GATEWAY_SERVICE = GATEWAY.name
ADMIN_SERVICE = KAFKA_ADMIN.name
USER_SERVICE = USER.name
# The contract's ports (docs/contract.md section 2), in the launcher's start order.
DEFAULT_PORTS: dict[str, int] = {service.name: service.port for service in SERVICES}


@dataclass(frozen=True)
class Targets:
    """Base URL of every service (in start order) and the broker's bootstrap servers."""

    services: dict[str, str]
    broker: str
    mail_page: str | None = None

    @property
    def admin_url(self) -> str:
        """The kafka admin service's base URL."""
        return self.services[ADMIN_SERVICE]

    @property
    def user_url(self) -> str:
        """The user service's base URL (role grants)."""
        return self.services[USER_SERVICE]

    @property
    def gateway_url(self) -> str:
        """The GraphQL gateway's base URL."""
        return self.services[GATEWAY_SERVICE]


def default_targets(host: str = DEFAULT_HOST) -> Targets:
    """The contract's ports on one host; the broker from KAFKA_BROKER or the default."""
    services = {name: f"http://{host}:{port}" for name, port in DEFAULT_PORTS.items()}
    return Targets(
        services,
        os.environ.get("KAFKA_BROKER") or DEFAULT_BROKER,
        f"http://{host}:{DEFAULT_MAIL_PAGE_PORT}",
    )


def targets_from_state(path: Path) -> Targets:
    """What the launcher wrote once the fleet was ready."""
    state = json.loads(path.read_text(encoding="utf-8"))
    services = {str(name): str(url) for name, url in state["services"].items()}
    broker = state.get("kafka") or os.environ.get("KAFKA_BROKER") or DEFAULT_BROKER
    mail_page = state.get("mail_page")
    return Targets(services, str(broker), str(mail_page) if mail_page else None)


def resolve_targets(state_file: Path | None, host: str = DEFAULT_HOST) -> Targets:
    """The state file's targets when one is given (and exists), else the default ports."""
    if state_file is not None:
        return targets_from_state(state_file)
    return default_targets(host)
