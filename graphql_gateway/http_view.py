"""The GraphQL view behind the transport (graphql_gateway/http_transport.py): Strawberry's ASGI
app running the operations the transport parsed, one or a batch, and shaping the answer:
- every error as a JSON GraphQL error (Strawberry's own refusals are plain text);
- a mutation by GET refused with 405 and `Allow: POST`;
- a persisted query's document kept under its hash once it parsed and validated;
- under `application/graphql-response+json`, a request error (no data; parsing, validation,
  variables, persisted queries) answers 4xx with no `data` entry;
- a GET answers `Cache-Control: no-store`, unless its query selects only public root fields
  (`PUBLIC_CACHEABLE_FIELDS`, marked by the `MarkPublicAnswers` extension): then
  `public, max-age=PUBLIC_CACHE_MAX_AGE_SECONDS`, so a CDN may keep it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from cross_web import HTTPException, StarletteRequestAdapter
from graphql import FieldNode, GraphQLError, OperationType, get_operation_ast
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.types import Receive, Scope, Send
from strawberry.asgi import GraphQL
from strawberry.exceptions import MissingQueryError
from strawberry.extensions import SchemaExtension
from strawberry.http import GraphQLHTTPResponse, GraphQLRequestData
from strawberry.schema.exceptions import CannotGetOperationTypeError, InvalidOperationTypeError
from strawberry.types import ExecutionResult
from strawberry.types.graphql import OperationType as StrawberryOperationType

from graphql_gateway.http_transport import (
    GRAPHQL_RESPONSE_JSON,
    JSON,
    NO_QUERY_MESSAGE,
    REQUEST_KEY,
    ParsedRequest,
    RequestRefused,
    refusal,
)
from graphql_gateway.persisted import PersistedQueries
from shared.errors import AppError, ErrorCode

if TYPE_CHECKING:
    from graphql_gateway.schema.context import GatewayContext

PUBLIC_KEY = "graphql_gateway.public_answer"
# Root fields anyone may read and whose answer is the same for everyone: a GET of a query
# selecting only these answers with `Cache-Control: public` so a CDN can keep it.
PUBLIC_CACHEABLE_FIELDS = frozenset({"products", "product"})
# Status of a request error under application/graphql-response+json, by code (else 400).
_REQUEST_ERROR_STATUS = {
    ErrorCode.PERSISTED_QUERY_NOT_FOUND.value: 404,
    ErrorCode.FORBIDDEN.value: 403,
}


def _request_error_status(response: GraphQLHTTPResponse) -> int | None:
    """The 4xx of an answer with no data whose errors are all request errors (no field path:
    parsing, validation, variables, persisted queries); None for any other answer."""
    errors = response.get("errors")
    if response.get("data") is not None or not errors:
        return None
    if any(isinstance(error, dict) and error.get("path") for error in errors):
        return None
    first = errors[0]
    code = first.get("extensions", {}).get("code") if isinstance(first, dict) else None
    return _REQUEST_ERROR_STATUS.get(str(code), 400)


class GatewaySubResponse(Response):
    """Strawberry's per-request response, holding the request's scope for `create_response`."""

    def __init__(self, scope: Scope) -> None:
        super().__init__()
        self.status_code = None  # type: ignore[assignment]
        del self.headers["content-length"]
        self.scope = scope


class GatewayRequestAdapter(StarletteRequestAdapter):
    """Strawberry's request adapter, with the ASGI scope the transport left its request in."""

    @property
    def scope(self) -> Scope:
        return self._request.scope


class GraphQLOverHTTP(GraphQL["GatewayContext", None]):
    """Strawberry's ASGI view over the transport's parsed request: every error as JSON, a
    mutation by GET refused with 405, persisted queries registered once they validated, and
    the answer's status, media type and Cache-Control as the module says."""

    request_adapter_class = GatewayRequestAdapter
    public_max_age_seconds = 60

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)
            return
        parsed: ParsedRequest | None = scope.get(REQUEST_KEY)
        response: Response
        if parsed is None:
            # Only GraphiQL's page gets here without a parsed request.
            if self.graphql_ide:
                response = HTMLResponse(self.graphql_ide_html)
            else:
                response = refusal(RequestRefused(404, "GraphiQL is not served here."), JSON)
        else:
            try:
                response = await self.run(Request(scope, receive))
            except RequestRefused as refused:
                response = refusal(refused, parsed.media_type)
            except HTTPException as exc:
                response = refusal(RequestRefused(exc.status_code, exc.reason), parsed.media_type)
        await response(scope, receive, send)

    def should_render_graphql_ide(self, request: Any) -> bool:
        return False

    async def get_sub_response(self, request: Request | Any) -> Response:
        return GatewaySubResponse(request.scope)

    async def parse_http_body(self, request: Any) -> GraphQLRequestData | list[GraphQLRequestData]:
        parsed: ParsedRequest = request.scope[REQUEST_KEY]
        if parsed.batch:
            return list(parsed.operations)
        return parsed.operations[0]

    async def execute_single(
        self,
        request: Request,
        request_adapter: Any,
        sub_response: Response,
        context: GatewayContext,
        root_value: None,
        request_data: GraphQLRequestData,
    ) -> ExecutionResult:
        error = getattr(request_data, "error", None)
        if error is not None:
            return ExecutionResult(data=None, errors=[_graphql_error(error)])
        method = request_adapter.method
        try:
            result = await self.schema.execute(
                request_data.query,
                root_value=root_value,
                variable_values=request_data.variables,
                context_value=context,
                operation_name=request_data.operation_name,
                allowed_operation_types=StrawberryOperationType.from_http(method),
                operation_extensions=request_data.extensions,
            )
        except InvalidOperationTypeError as exc:
            if method == "GET":
                raise RequestRefused(
                    405,
                    "Only queries run by GET; send mutations by POST.",
                    headers={"allow": "POST"},
                ) from exc
            return ExecutionResult(
                data=None, errors=[GraphQLError(exc.as_http_error_reason(method))]
            )
        except CannotGetOperationTypeError as exc:
            return ExecutionResult(data=None, errors=[GraphQLError(exc.as_http_error_reason())])
        except MissingQueryError:
            return ExecutionResult(data=None, errors=[GraphQLError(NO_QUERY_MESSAGE)])
        register = getattr(request_data, "register", None)
        if register and request_data.query and not _ran_nothing(result):
            persisted: PersistedQueries | None = getattr(
                request.app.state, "persisted_queries", None
            )
            if persisted is not None:
                await persisted.register(register, request_data.query)
        return result

    def create_response(
        self,
        response_data: GraphQLHTTPResponse | list[GraphQLHTTPResponse],
        sub_response: Response,
    ) -> Response:
        scope: Scope = getattr(sub_response, "scope", {})
        parsed: ParsedRequest | None = scope.get(REQUEST_KEY)
        media_type = parsed.media_type if parsed else JSON
        status = 200
        headers: list[tuple[bytes, bytes]] = parsed.answer_headers() if parsed else []
        if isinstance(response_data, dict):
            request_error = _request_error_status(response_data)
            if media_type == GRAPHQL_RESPONSE_JSON and request_error is not None:
                status = request_error
                response_data = {k: v for k, v in response_data.items() if k != "data"}  # type: ignore[assignment]
            elif (
                parsed is not None
                and parsed.method == "GET"
                and scope.get(PUBLIC_KEY)
                and not response_data.get("errors")
            ):
                headers = [
                    (b"content-type", media_type.encode()),
                    (b"cache-control", f"public, max-age={self.public_max_age_seconds}".encode()),
                    (b"vary", b"accept"),
                ]
        response = Response(self.encode_json(response_data), status_code=status)
        response.headers.raw.extend(headers)
        response.headers.raw.extend(sub_response.headers.raw)
        if sub_response.background:
            response.background = sub_response.background
        if sub_response.status_code:
            response.status_code = sub_response.status_code
        return response


def _graphql_error(error: AppError) -> GraphQLError:
    return GraphQLError(error.message, extensions={"code": error.code.value})


def _ran_nothing(result: ExecutionResult) -> bool:
    """Whether an operation failed before running (parsing, validation, variables)."""
    return (
        result.data is None
        and bool(result.errors)
        and all(e.path is None for e in result.errors or [])
    )


class MarkPublicAnswers(SchemaExtension):
    """Marks the request of a query selecting only public root fields, so a GET of it answers
    with `Cache-Control: public` (see the module)."""

    public_fields: frozenset[str] = PUBLIC_CACHEABLE_FIELDS

    def on_execute(self) -> Iterator[None]:
        yield
        execution = self.execution_context
        request = getattr(execution.context, "request", None)
        scope = getattr(request, "scope", None)
        document = execution.graphql_document
        if scope is None or document is None or execution.result is None:
            return
        operation = get_operation_ast(document, execution.operation_name)
        if operation is None or operation.operation is not OperationType.QUERY:
            return
        names = [
            selection.name.value if isinstance(selection, FieldNode) else None
            for selection in operation.selection_set.selections
        ]
        public = [name for name in names if name != "__typename"]
        if public and all(name in self.public_fields for name in public):
            scope[PUBLIC_KEY] = True


def public_answers(fields: frozenset[str]) -> type[MarkPublicAnswers]:
    """The extension for another set of public root fields (tests, or a schema of its own)."""
    return type("MarkPublicAnswers", (MarkPublicAnswers,), {"public_fields": fields})
