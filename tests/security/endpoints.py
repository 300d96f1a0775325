"""Every HTTP endpoint an app serves, read from its routes (included routers flattened), so a
new endpoint shows up in the security tests without anyone listing it."""

from __future__ import annotations

from typing import Any

from starlette.routing import Route, WebSocketRoute

IGNORED_METHODS = frozenset({"HEAD"})
WEBSOCKET = "WEBSOCKET"


def _contexts(route: Any) -> list[tuple[str, set[str]]]:
    if isinstance(route, WebSocketRoute):
        return [(route.path, {WEBSOCKET})]
    if isinstance(route, Route):
        return [(route.path, set(route.methods or ()))]
    contexts = getattr(route, "effective_route_contexts", None)
    if contexts is not None:  # FastAPI's included router
        return [(c.path, set(c.methods or ())) for c in contexts()]
    path = getattr(route, "path", None)
    methods = getattr(route, "methods", None)
    if path is not None and methods is not None:
        return [(path, set(methods))]
    raise AssertionError(f"a route of an unknown kind: {route!r}")


def endpoints(app: Any) -> set[tuple[str, str]]:
    """(method, path) of every route the app serves (WEBSOCKET for a WebSocket route)."""
    found: set[tuple[str, str]] = set()
    for route in app.routes:
        for path, methods in _contexts(route):
            found |= {(method, path) for method in methods - IGNORED_METHODS}
    return found
