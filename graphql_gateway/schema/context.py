"""What every resolver reaches through `info.context`: the long-lived parts and the caller."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from graphql_gateway.auth import Credentials, authenticate
from graphql_gateway.cache import GatewayCache
from graphql_gateway.clients import Clients
from graphql_gateway.limits import ConnectionSlots, UserLimits
from graphql_gateway.settings import GatewaySettings
from graphql_gateway.subscriptions import SubscriptionHub


@dataclass(frozen=True, slots=True)
class Gateway:
    """The parts built once in the lifespan and shared by every request."""

    settings: GatewaySettings
    clients: Clients
    cache: GatewayCache
    hub: SubscriptionHub
    limits: UserLimits
    connections: ConnectionSlots


@dataclass
class GatewayContext:
    """One request, or one WebSocket connection: the shared parts and the Authorization header
    (verified on first use). On a WebSocket, Strawberry sets `connection_params` from the
    connection_init payload, and the token is taken from there."""

    gateway: Gateway
    authorization: str | None
    request: Any = None
    response: Any = None
    connection_params: dict[str, Any] | None = None
    # On a WebSocket: the task that closes the connection when its token expires, and the
    # user whose connection slot it holds (given back when it closes).
    expiry_watch: asyncio.Task[None] | None = field(default=None, repr=False)
    connection_of: str | None = None
    _credentials: Credentials | None = field(default=None, repr=False)

    @property
    def clients(self) -> Clients:
        """The downstream services."""
        return self.gateway.clients

    @property
    def hub(self) -> SubscriptionHub:
        """This process's live GraphQL subscriptions."""
        return self.gateway.hub

    @property
    def limits(self) -> UserLimits:
        """The per-user limits of the expensive fields."""
        return self.gateway.limits

    @property
    def cache(self) -> GatewayCache:
        """The Redis read cache."""
        return self.gateway.cache

    def credentials(self) -> Credentials:
        """The verified caller; raises Unauthenticated (before any downstream call) if not."""
        if self._credentials is None:
            self._credentials = authenticate(self.authorization, self.gateway.settings)
        return self._credentials
