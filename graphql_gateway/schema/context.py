"""What every resolver reaches through `info.context` (`ctx = info.context`, then `ctx.clients`,
`ctx.cache`, `ctx.limits`, `ctx.hub`, `ctx.settings`): the long-lived parts and the caller."""

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
from shared.errors import Unauthenticated

SESSION_ENDED = "This session has ended; log in again."


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
    # Whether the token's session has ended (set once per request, before any resolver).
    session_revoked: bool = False
    # On a WebSocket: the task that closes the connection when its token expires, and the
    # user whose connection slot it holds (given back when it closes).
    expiry_watch: asyncio.Task[None] | None = field(default=None, repr=False)
    connection_of: str | None = None
    _credentials: Credentials | None = field(default=None, repr=False)

    @property
    def settings(self) -> GatewaySettings:
        """The gateway's settings."""
        return self.gateway.settings

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
        """The verified caller of a session that has not ended; raises Unauthenticated (before
        any downstream call) if not."""
        if self._credentials is None:
            self._credentials = authenticate(self.authorization, self.gateway.settings)
        if self.session_revoked:
            raise Unauthenticated(SESSION_ENDED)
        return self._credentials

    async def check_session(self, known: bool | None = None) -> None:
        """Look up (once) whether the token's session has ended; `known` when the answer cache
        already did. A missing or invalid token is left for `credentials` to refuse."""
        if known is not None:
            self.session_revoked = known
            return
        try:
            credentials = self.credentials()
        except Unauthenticated:
            return
        self.session_revoked = await self.cache.session_revoked(credentials.caller.session_id)
