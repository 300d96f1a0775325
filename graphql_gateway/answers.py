"""Whole GraphQL answers kept in the user's cache hash, so a repeated read skips GraphQL.

A single operation (POST, or GET; by text or by persisted hash) with a valid token is looked up
by (user, roles, operation: document, variables, operation name, as the transport of
graphql_gateway/http_transport.py read them): on a hit the stored bytes are the answer, after
one Redis round trip and no parsing, validation or resolvers (profiled in issue 8:
Strawberry's execution was over half of a cached read's cost).

On a miss the request runs through Strawberry as usual, and its answer is kept when all of
these hold: the operation is a query; it selects only fields whose data the cache invalidates
(`CACHEABLE_FIELDS`, plus `__typename`), directly at its root; it answered 200 with no errors;
and nothing invalidated the user since the request began (the epoch guard of
graphql_gateway/cache.py). The same operation from the same user can then only mean the same
answer until one of the invalidations of cache.py drops it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from graphql import FieldNode, OperationType, get_operation_ast
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from strawberry.extensions import SchemaExtension

from graphql_gateway.auth import authenticate
from graphql_gateway.cache import Epoch, answer_field
from graphql_gateway.http_transport import REQUEST_KEY, GatewayRequestData, ParsedRequest
from graphql_gateway.persisted import PersistedQueries
from graphql_gateway.tracing import mark_cached_answer
from shared.errors import Unauthenticated

if TYPE_CHECKING:
    from graphql_gateway.schema.context import Gateway

CACHEABLE_FIELDS = frozenset({"getUserDetails", "getUserNotifications", "__typename"})
# Where the middleware leaves the pending answer for the extension (in the ASGI scope, which
# Strawberry's request object shares).
SCOPE_KEY = "graphql_gateway.pending_answer"
# Where it leaves whether the token's session has ended (checked with the lookup), so the
# context does not ask Redis again.
SESSION_REVOKED_KEY = "graphql_gateway.session_revoked"
_CACHEABLE_NAMES = tuple(name.encode() for name in CACHEABLE_FIELDS if not name.startswith("__"))


@dataclass(slots=True)
class PendingAnswer:
    """A missed lookup: where its answer would go, and whether it may."""

    user_id: str
    field: str
    epoch: Epoch
    cacheable: bool = False


def answer_digest(roles: tuple[str, ...], body: bytes) -> str:
    """What identifies an answer within a user's hash: the caller's roles and the operation
    (`ParsedRequest.cache_key`: document, variables and operation name)."""
    digest = hashlib.blake2b(body, digest_size=16, person=b"gateway-answer")
    digest.update(",".join(roles).encode())
    return digest.hexdigest()


class AnswerCache:
    """ASGI middleware in front of the GraphQL route: answers repeated reads from Redis, and
    keeps new answers the `MarkCacheableAnswers` extension approved."""

    def __init__(self, app: ASGIApp, path: str) -> None:
        self.app = app
        self.path = path
        self._route: object = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != self.path:
            await self.app(scope, receive, send)
            return
        gateway: Gateway | None = getattr(scope["app"].state, "gateway", None)
        parsed: ParsedRequest | None = scope.get(REQUEST_KEY)
        key = parsed.cache_key() if parsed is not None else None
        authorization = _authorization(scope)
        if (
            gateway is None
            or parsed is None
            or key is None
            or not gateway.cache.available()
            or authorization is None
        ):
            await self.app(scope, receive, send)
            return
        try:
            credentials = authenticate(authorization, gateway.settings)
        except Unauthenticated:
            # Strawberry answers it, with the contract's error.
            await self.app(scope, receive, send)
            return
        cache = gateway.cache
        if not _may_be_kept(key):
            await self.app(scope, receive, send)
            return
        user_id = credentials.caller.user_id
        field = answer_field(answer_digest(credentials.caller.roles, key))
        answer, epoch, revoked = await cache.lookup_checked(
            user_id, field, credentials.caller.session_id
        )
        scope[SESSION_REVOKED_KEY] = revoked
        if revoked:
            # Strawberry answers it (UNAUTHENTICATED), and nothing is kept.
            await self.app(scope, receive, send)
            return
        if answer is not None:
            scope["route"] = self._graphql_route(scope)
            operation = parsed.single()
            if operation is not None:
                mark_cached_answer(operation.query, operation.operation_name)
                await _register_persisted(scope, operation)
            await _send_answer(send, answer, parsed.answer_headers())
            return
        if epoch is None:
            epoch = await cache.open_epoch(user_id)
        if epoch is None:
            await self.app(scope, receive, send)
            return
        pending = scope[SCOPE_KEY] = PendingAnswer(user_id=user_id, field=field, epoch=epoch)
        status = 0
        chunks: list[bytes] = []

        async def capture(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))
            await send(message)

        await self.app(scope, receive, capture)
        if pending.cacheable and status == 200:
            await cache.store(user_id, epoch, field, b"".join(chunks), is_answer=True)

    def _graphql_route(self, scope: Scope) -> object:
        """The route of this path, so metrics and logs of an answer from the cache name it."""
        if self._route is None:
            self._route = next(
                (r for r in scope["app"].router.routes if getattr(r, "path", None) == self.path),
                None,
            )
        return self._route


async def _register_persisted(scope: Scope, operation: GatewayRequestData) -> None:
    """Keep a persisted query's document under its hash when its answer comes from the cache:
    Strawberry, which registers it once it validated, does not run, and a kept answer proves
    this very operation validated and ran without errors."""
    if operation.register is None or operation.query is None:
        return
    persisted: PersistedQueries | None = getattr(scope["app"].state, "persisted_queries", None)
    if persisted is not None:
        await persisted.register(operation.register, operation.query)


class MarkCacheableAnswers(SchemaExtension):
    """Approves a pending answer once its operation ran: a query of cacheable root fields
    with no errors."""

    def on_execute(self) -> Iterator[None]:
        yield
        context = self.execution_context.context
        request = getattr(context, "request", None)
        pending = getattr(request, "scope", {}).get(SCOPE_KEY)
        if not isinstance(pending, PendingAnswer):
            return
        result = self.execution_context.result
        document = self.execution_context.graphql_document
        if result is None or result.errors or document is None:
            return
        operation = get_operation_ast(document, self.execution_context.operation_name)
        if operation is None or operation.operation is not OperationType.QUERY:
            return
        pending.cacheable = all(
            isinstance(selection, FieldNode) and selection.name.value in CACHEABLE_FIELDS
            for selection in operation.selection_set.selections
        )


def _may_be_kept(key: bytes) -> bool:
    """Whether an operation is worth a lookup: it names a cacheable field and no mutation.
    Only ever a shortcut past Redis: what is kept is decided after running."""
    return any(name in key for name in _CACHEABLE_NAMES) and b"mutation" not in key


def _authorization(scope: Scope) -> str | None:
    """The first Authorization header: the one Starlette's `request.headers` gives GraphQL,
    so a request with two is not authenticated as another."""
    for name, value in scope["headers"]:
        if name == b"authorization":
            return str(value.decode("latin-1"))
    return None


async def _send_answer(send: Send, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [*headers, (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})
