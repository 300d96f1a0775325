"""Whole GraphQL answers kept in the user's cache hash, so a repeated read skips GraphQL.

A `POST /graphql` with a JSON body and a valid token is looked up by (user, roles, body): on a
hit the stored bytes are the answer, after one Redis round trip and no parsing, validation or
resolvers (profiled in issue 8: Strawberry's execution was over half of a cached read's cost).

On a miss the request runs through Strawberry as usual, and its answer is kept when all of
these hold: the operation is a query; it selects only fields whose data the cache invalidates
(`CACHEABLE_FIELDS`, plus `__typename`), directly at its root; it answered 200 with no errors;
and nothing invalidated the user since the request began (the epoch guard of
graphql_gateway/cache.py). The same body from the same user can then only mean the same
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
from graphql_gateway.tracing import mark_cached_answer
from shared.errors import Unauthenticated

if TYPE_CHECKING:
    from graphql_gateway.schema.context import Gateway

CACHEABLE_FIELDS = frozenset({"getUserDetails", "getUserNotifications", "__typename"})
# Where the middleware leaves the pending answer for the extension (in the ASGI scope, which
# Strawberry's request object shares).
SCOPE_KEY = "graphql_gateway.pending_answer"
_JSON = b"application/json"
_CACHEABLE_NAMES = tuple(name.encode() for name in CACHEABLE_FIELDS if not name.startswith("__"))


@dataclass(slots=True)
class PendingAnswer:
    """A missed lookup: where its answer would go, and whether it may."""

    user_id: str
    field: str
    epoch: Epoch
    cacheable: bool = False


def answer_digest(roles: tuple[str, ...], body: bytes) -> str:
    """What identifies an answer within a user's hash: the caller's roles and the exact body
    (operation, variables and operation name)."""
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
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] != self.path:
            await self.app(scope, receive, send)
            return
        gateway: Gateway | None = getattr(scope["app"].state, "gateway", None)
        authorization, content_type = _headers(scope)
        if (
            gateway is None
            or not gateway.cache.available()
            or authorization is None
            or not content_type.startswith(_JSON)
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
        body, replay = await _read_body(receive)
        if not _may_be_kept(body):
            await self.app(scope, replay, send)
            return
        user_id = credentials.caller.user_id
        field = answer_field(answer_digest(credentials.caller.roles, body))
        answer, epoch = await cache.lookup(user_id, field)
        if answer is not None:
            scope["route"] = self._graphql_route(scope)
            mark_cached_answer(body)
            await _send_json(send, answer)
            return
        if epoch is None:
            epoch = await cache.open_epoch(user_id)
        if epoch is None:
            await self.app(scope, replay, send)
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

        await self.app(scope, replay, capture)
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


def _may_be_kept(body: bytes) -> bool:
    """Whether a body is worth a lookup: a JSON object (not a batch) naming a cacheable field
    and no mutation. Only ever a shortcut past Redis: what is kept is decided after running."""
    return (
        body.lstrip().startswith(b"{")
        and any(name in body for name in _CACHEABLE_NAMES)
        and b"mutation" not in body
    )


def _headers(scope: Scope) -> tuple[str | None, bytes]:
    """Authorization and Content-Type, each its first occurrence: the one Starlette's
    `request.headers` gives GraphQL, so a request with two is not authenticated as another."""
    authorization: str | None = None
    content_type: bytes | None = None
    for name, value in scope["headers"]:
        if name == b"authorization" and authorization is None:
            authorization = value.decode("latin-1")
        elif name == b"content-type" and content_type is None:
            content_type = value
    return authorization, (content_type or b"").lower()


async def _read_body(receive: Receive) -> tuple[bytes, Receive]:
    """The whole body (its size is already bounded by BodySizeLimit), and a `receive` that
    hands it to the app behind as if unread."""
    messages: list[Message] = []
    chunks: list[bytes] = []
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break

    async def replay() -> Message:
        return messages.pop(0) if messages else await receive()

    return b"".join(chunks), replay


async def _send_json(send: Send, body: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", _JSON),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
