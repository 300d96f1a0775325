"""A small client of the admin APIs (admin JWT in FLEET_TOKEN): the kafka admin service's
monitoring API, and the user service's role grants."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx

from shared.events.topics import DLQ_SUFFIX, dead_letter_topic

TOKEN_ENV = "FLEET_TOKEN"  # noqa: S105 - the variable name, not a token


class AdminApiError(RuntimeError):
    """The monitoring API refused or failed; the message is the service's own sentence."""


def dlq_name(topic: str) -> str:
    """`order.placed` or `order.placed.dlq` -> `order.placed.dlq`."""
    return topic if topic.endswith(DLQ_SUFFIX) else dead_letter_topic(topic)


class AdminClient:
    """GET/POST the monitoring API with `Authorization: Bearer <token>`."""

    def __init__(self, base_url: str, token: str | None, timeout_seconds: float) -> None:
        headers = {"authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(base_url=base_url, headers=headers, timeout=timeout_seconds)

    def __enter__(self) -> AdminClient:
        return self

    def __exit__(self, *_: object) -> None:
        self._http.close()

    def _call(self, method: str, path: str) -> Any:
        try:
            response = self._http.request(method, path)
        except httpx.HTTPError as exc:
            raise AdminApiError(
                f"The service at {self._http.base_url} did not answer ({type(exc).__name__})."
            ) from exc
        if response.is_error:
            try:
                error = response.json()["error"]
                message = f"{error['code']}: {error['message']}"
            except (ValueError, KeyError, TypeError):
                message = f"HTTP {response.status_code}"
            raise AdminApiError(message)
        return response.json()

    def topics(self) -> list[dict[str, Any]]:
        """`GET /api/topics`."""
        return list(self._call("GET", "/api/topics"))

    def consumer_groups(self) -> list[dict[str, Any]]:
        """`GET /api/consumer-groups`."""
        return list(self._call("GET", "/api/consumer-groups"))

    def dlq(self) -> list[dict[str, Any]]:
        """`GET /api/dlq`."""
        return list(self._call("GET", "/api/dlq"))

    def replay(self, topic: str) -> dict[str, Any]:
        """`POST /api/dlq/{topic}/replay`."""
        return dict(self._call("POST", f"/api/dlq/{dlq_name(topic)}/replay"))

    def set_admin(self, email: str, *, granted: bool) -> dict[str, Any]:
        """`PUT` (grant) or `DELETE` (revoke) `/admin/admins/{email}` on the user service."""
        return dict(self._call("PUT" if granted else "DELETE", f"/admin/admins/{quote(email)}"))
