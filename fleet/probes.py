"""Each service's `/health` and `/ready`, once or until everything is ready."""

from __future__ import annotations

from dataclasses import dataclass, field

import httpx


@dataclass(frozen=True)
class ServiceState:
    """What one service answered (`None`: it did not answer)."""

    name: str
    url: str
    healthy: bool
    ready: bool
    checks: dict[str, bool] = field(default_factory=dict)
    problem: str | None = None

    @property
    def summary(self) -> str:
        """One short phrase for a table cell."""
        if self.problem:
            return self.problem
        failing = [name for name, ok in self.checks.items() if not ok]
        if self.ready:
            return "ready"
        return "waiting for " + ", ".join(failing) if failing else "not ready"


def probe(client: httpx.Client, name: str, url: str) -> ServiceState:
    """GET `/health` then `/ready` of one service."""
    try:
        health = client.get(f"{url}/health")
        ready = client.get(f"{url}/ready")
    except httpx.HTTPError as exc:
        return ServiceState(name, url, False, False, problem=f"no answer ({type(exc).__name__})")
    try:
        body = ready.json()
        checks = {str(k): bool(v) for k, v in dict(body.get("checks") or {}).items()}
    except ValueError:
        checks = {}
    return ServiceState(
        name,
        url,
        healthy=health.status_code == httpx.codes.OK,
        ready=ready.status_code == httpx.codes.OK,
        checks=checks,
    )


def probe_all(services: dict[str, str], timeout_seconds: float) -> list[ServiceState]:
    """Every service, in the order given."""
    with httpx.Client(timeout=timeout_seconds) as client:
        return [probe(client, name, url) for name, url in services.items()]
