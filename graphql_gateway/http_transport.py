"""GraphQL over HTTP at `/graphql`, as the GraphQL-over-HTTP spec and Apollo's clients expect.

`GraphQLTransport` (ASGI middleware, in front of the answer cache) reads every request once:
- POST with a JSON body: one operation (an object) or a batch (an array of at most
  GRAPHQL_BATCH_MAX_OPERATIONS objects, answered by an array in the same order);
- GET with `query`, `variables`, `operationName`, `extensions` in the URL (queries only: a
  mutation answers 405 with `Allow: POST`); a GET asking for HTML with no operation is GraphiQL;
- CSRF as Apollo Server prevents it: a GET or POST whose Content-Type a form could send (none,
  text/plain, form data) runs only with a non-empty `apollo-require-preflight` or
  `x-apollo-operation-name` header, which no browser sends cross-site without a preflight;
- the answer's media type: `application/graphql-response+json` when the Accept header prefers
  it (request errors then answer 4xx with no `data`), else `application/json` (errors answer
  200, as the original's clients expect); nothing acceptable answers 406;
- persisted queries (graphql_gateway/persisted.py) resolved to their document.
A request it refuses is answered here, always as a JSON GraphQL error; otherwise the parsed
request goes on in the ASGI scope (`REQUEST_KEY`), where the answer cache
(graphql_gateway/answers.py) and the GraphQL view (graphql_gateway/http_view.py) read it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

import orjson
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from strawberry.http import GraphQLRequestData

from graphql_gateway.persisted import PersistedQueries, error_of
from shared.errors import AppError, BadUserInput, ServiceUnavailable
from shared.http import overloaded_answer

REQUEST_KEY = "graphql_gateway.request"
GRAPHQL_RESPONSE_JSON = "application/graphql-response+json"
JSON = "application/json"
PREFLIGHT_HEADERS = (b"apollo-require-preflight", b"x-apollo-operation-name")
# What a form or a simple fetch can send without a CORS preflight.
SIMPLE_CONTENT_TYPES = frozenset(
    {"", "text/plain", "application/x-www-form-urlencoded", "multipart/form-data"}
)
CSRF_MESSAGE = (
    "This request has been blocked as a potential cross-site request forgery: send it with a "
    "Content-Type of application/json, or a non-empty apollo-require-preflight header."
)
NO_QUERY_MESSAGE = "No GraphQL query found in the request."
_NO_STORE = (b"cache-control", b"no-store")
# What each acceptable media range of an Accept header is answered with.
_ANSWERED_AS = {
    GRAPHQL_RESPONSE_JSON: GRAPHQL_RESPONSE_JSON,
    JSON: JSON,
    "application/*": JSON,
    "*/*": JSON,
}


class RequestRefused(Exception):
    """A request the transport answers itself, with a status and one GraphQL error."""

    def __init__(self, status: int, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


@dataclass(slots=True)
class GatewayRequestData(GraphQLRequestData):
    """One operation: Strawberry's request data, the error that stops it before it runs (an
    unknown persisted query, ...), and the hash to keep its document under once it validated."""

    error: AppError | None = None
    register: str | None = None


@dataclass(slots=True)
class ParsedRequest:
    """A GraphQL request as the transport read it."""

    method: str
    media_type: str
    operations: list[GatewayRequestData]
    batch: bool

    def single(self) -> GatewayRequestData | None:
        """The operation of a request that is not a batch."""
        return None if self.batch else self.operations[0]

    def cache_key(self) -> bytes | None:
        """What identifies the answer of a single, runnable operation, whatever way it came
        (POST or GET, text or persisted hash); None for a batch or a refused operation."""
        operation = self.single()
        if operation is None or operation.error is not None or operation.query is None:
            return None
        return orjson.dumps(
            [operation.query, operation.variables or {}, operation.operation_name],
            option=orjson.OPT_SORT_KEYS,
        )

    def answer_headers(self) -> list[tuple[bytes, bytes]]:
        """Headers of an answer that no shared cache may keep."""
        headers = [(b"content-type", self.media_type.encode())]
        if self.method == "GET":
            headers.append(_NO_STORE)
        return headers


def negotiate(accept: str) -> str | None:
    """The media type to answer with for an Accept header (None: nothing acceptable)."""
    if not accept.strip():
        return JSON
    best: tuple[float, int, str] | None = None
    for index, item in enumerate(accept.split(",")):
        media, _, params = item.partition(";")
        media = media.strip().lower()
        quality = 1.0
        for param in params.split(";"):
            name, _, value = param.partition("=")
            if name.strip() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        chosen = _ANSWERED_AS.get(media)
        if chosen is None or quality <= 0:
            continue
        if best is None or quality > best[0]:
            best = (quality, index, chosen)
    return best[2] if best else None


def _header(scope: Scope, name: bytes) -> str:
    """A header's first value ('' if absent)."""
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return ""


def _media_type(header: str) -> str:
    return header.partition(";")[0].strip().lower()


def _object(value: Any, name: str) -> dict[str, Any] | None:
    if value is None or isinstance(value, dict):
        return value
    raise RequestRefused(400, f"The operation's `{name}` must be an object or null.")


def _operation(data: Any) -> GatewayRequestData:
    """One operation of a request, its parameters checked."""
    if not isinstance(data, dict):
        raise RequestRefused(400, "A GraphQL request is a JSON object (or an array of them).")
    query = data.get("query")
    if not isinstance(query, str | None):
        raise RequestRefused(400, "The operation's `query` must be a string or null.")
    operation_name = data.get("operationName")
    if not isinstance(operation_name, str | None):
        raise RequestRefused(400, "The operation's `operationName` must be a string or null.")
    extensions = _object(data.get("extensions"), "extensions")
    if query is None and not (extensions or {}).get("persistedQuery"):
        raise RequestRefused(400, NO_QUERY_MESSAGE)
    return GatewayRequestData(
        query=query,
        variables=_object(data.get("variables"), "variables"),
        operation_name=operation_name,
        extensions=extensions,
    )


def _json_param(params: dict[str, str], name: str) -> Any:
    raw = params.get(name)
    if not raw:
        return None
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise RequestRefused(400, f"The `{name}` parameter is not JSON.") from None


def parse_get(scope: Scope) -> dict[str, Any]:
    """The operation of a GET: the URL's parameters, `variables` and `extensions` decoded."""
    params: dict[str, str] = {}
    for name, value in parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True):
        params.setdefault(name, value)
    return {
        "query": params.get("query") or None,
        "operationName": params.get("operationName") or None,
        "variables": _json_param(params, "variables"),
        "extensions": _json_param(params, "extensions"),
    }


def parse_post(body: bytes, max_batch: int) -> tuple[list[Any], bool]:
    """The operations of a POST body, and whether it is a batch."""
    if not body.strip():
        raise RequestRefused(400, "The request has no body.")
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise RequestRefused(400, "The request body is not JSON.") from None
    if not isinstance(data, list):
        return [data], False
    if not data:
        raise RequestRefused(400, "A batch holds at least one operation.")
    if len(data) > max_batch:
        raise RequestRefused(400, f"A batch holds at most {max_batch} operations.")
    return data, True


def _wants_graphiql(scope: Scope) -> bool:
    """A browser opening `/graphql`: a GET asking for HTML with no operation in the URL."""
    query_string: bytes = scope["query_string"]
    return (
        b"query=" not in query_string
        and b"extensions=" not in query_string
        and "text/html" in _header(scope, b"accept")
    )


class GraphQLTransport:
    """ASGI middleware at the GraphQL path: reads and checks the request (see the module)."""

    def __init__(self, app: ASGIApp, path: str, max_batch: int) -> None:
        self.app = app
        self.path = path
        self.max_batch = max_batch

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != self.path:
            await self.app(scope, receive, send)
            return
        method = scope["method"]
        if method == "GET" and _wants_graphiql(scope):
            await self.app(scope, receive, send)
            return
        media_type = negotiate(_header(scope, b"accept"))
        body, replay = await read_body(receive)
        try:
            if method not in ("GET", "POST"):
                raise RequestRefused(405, "GraphQL is served by GET and POST.", headers=_ALLOW)
            if media_type is None:
                raise RequestRefused(
                    406, f"Accept {GRAPHQL_RESPONSE_JSON} or {JSON}: nothing else is served."
                )
            parsed = await self._parse(scope, method, media_type, body)
        except RequestRefused as refused:
            # Named like the route's own answers, so metrics and logs count it under its path.
            scope["route"] = next(
                (r for r in scope["app"].router.routes if getattr(r, "path", None) == self.path),
                None,
            )
            await refusal(refused, media_type or JSON)(scope, replay, send)
            return
        scope[REQUEST_KEY] = parsed
        await self.app(scope, replay, send)

    async def _parse(
        self, scope: Scope, method: str, media_type: str, body: bytes
    ) -> ParsedRequest:
        content_type = _media_type(_header(scope, b"content-type"))
        if content_type in SIMPLE_CONTENT_TYPES and not any(
            _header(scope, name).strip() for name in PREFLIGHT_HEADERS
        ):
            raise RequestRefused(400, CSRF_MESSAGE)
        if method == "GET":
            items, batch = [parse_get(scope)], False
        elif content_type != JSON:
            raise RequestRefused(415, f"A GraphQL POST is sent as {JSON}.")
        else:
            items, batch = parse_post(body, self.max_batch)
        operations = [_operation(item) for item in items]
        persisted: PersistedQueries | None = getattr(scope["app"].state, "persisted_queries", None)
        if persisted is not None:
            for operation in operations:
                try:
                    resolved = await persisted.resolve(operation.query, operation.extensions)
                except AppError as exc:
                    operation.error = exc
                    continue
                operation.query = resolved.query
                operation.register = resolved.register
        return ParsedRequest(method, media_type, operations, batch)


_ALLOW = {"allow": "GET, POST"}


def refusal(refused: RequestRefused, media_type: str) -> Response:
    """The answer to a refused request: its status, one GraphQL error, never plain text."""
    body = {"errors": [error_of(BadUserInput(refused.message))]}
    return Response(
        orjson.dumps(body),
        status_code=refused.status,
        media_type=media_type,
        headers=refused.headers,
    )


def overloaded_at(path: str) -> Callable[[Scope, ServiceUnavailable], Response]:
    """The gateway's refusal for overload (shared/http.py's admission limit): at the GraphQL
    path a GraphQL error SERVICE_UNAVAILABLE with status 503 (in the media type asked for, as
    every refusal of the transport), elsewhere the fleet's error body."""

    def answer(scope: Scope, error: ServiceUnavailable) -> Response:
        if scope["path"] != path:
            return overloaded_answer(scope, error)
        return Response(
            orjson.dumps({"errors": [error_of(error)]}),
            status_code=error.http_status,
            media_type=negotiate(_header(scope, b"accept")) or JSON,
        )

    return answer


async def read_body(receive: Receive) -> tuple[bytes, Receive]:
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
