"""What the gateway refuses before any resolver runs, and who may call it from a browser.

- GraphQL: query depth, tokens, aliases, a cost (fields selected, fragments expanded), control
  characters in text arguments (plain_text.py), and introspection when
  GRAPHQL_INTROSPECTION=false. The validation rules are built once, so the validation cache
  keys on the same rules every request (a per-request rule misses it always).
- HTTP: a request body larger than MAX_REQUEST_BODY_BYTES answers 413 without being read on.
- CORS: the origins CORS_ORIGINS lists (none: no CORS headers at all).
- Per user: placeOrder and productRecommendation calls (each alias counts) in Redis, and
  subscription connections in this process.
- The client's address (the peer's, or the one X-Forwarded-For names when the peer is one of
  TRUSTED_PROXIES) travels to the services in X-Forwarded-For (rate limits per address).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import orjson
from fastapi import FastAPI
from graphql import (
    ASTValidationRule,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
    ValidationContext,
)
from graphql.validation import NoSchemaIntrospectionCustomRule
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from strawberry.extensions import AddValidationRules, MaxTokensLimiter
from strawberry.extensions.max_aliases import create_validator as aliases_rule
from strawberry.extensions.query_depth_limiter import create_validator as depth_rule

from graphql_gateway.plain_text import PlainTextLiterals, PlainTextVariables
from graphql_gateway.settings import GatewaySettings
from shared.errors import BadUserInput, RateLimited
from shared.http import trust_forwarded_for
from shared.ratelimit import RateLimiter, Rule, parse_limit

FORWARDED_FOR_HEADER = "x-forwarded-for"
_client_address: ContextVar[str | None] = ContextVar("client_address", default=None)


def client_address() -> str | None:
    """The address of the client whose request is being served (None outside a request)."""
    return _client_address.get()


def _too_costly(cost: int, max_cost: int) -> str:
    return f"The query selects {cost} fields; at most {max_cost} are allowed."


def cost_rule(max_cost: int) -> type[ASTValidationRule]:
    """A rule refusing an operation that selects more than `max_cost` fields, counting each
    use of a fragment again (introspection fields are free: turned off, they are refused)."""

    class MaxCostRule(ASTValidationRule):
        def __init__(self, context: ValidationContext) -> None:
            super().__init__(context)
            document = context.document
            fragments = {
                d.name.value: d
                for d in document.definitions
                if isinstance(d, FragmentDefinitionNode)
            }
            for definition in document.definitions:
                if isinstance(definition, OperationDefinitionNode):
                    cost = _cost(definition.selection_set, fragments, frozenset())
                    if cost > max_cost:
                        context.report_error(
                            GraphQLError(
                                _too_costly(cost, max_cost),
                                [definition],
                                extensions={"code": BadUserInput.code.value},
                            )
                        )

    return MaxCostRule


def _cost(
    selections: SelectionSetNode | None,
    fragments: dict[str, FragmentDefinitionNode],
    seen: frozenset[str],
) -> int:
    if selections is None:
        return 0
    total = 0
    for node in selections.selections:
        if isinstance(node, FieldNode):
            if not node.name.value.startswith("__"):
                total += 1 + _cost(node.selection_set, fragments, seen)
        elif isinstance(node, InlineFragmentNode):
            total += _cost(node.selection_set, fragments, seen)
        elif isinstance(node, FragmentSpreadNode):
            name = node.name.value
            fragment = fragments.get(name)
            # Unknown or cyclic fragments are GraphQL's own validation errors.
            if fragment is not None and name not in seen:
                total += _cost(fragment.selection_set, fragments, seen | {name})
    return total


def validation_rules(settings: GatewaySettings) -> list[type[ASTValidationRule]]:
    """The gateway's own validation rules, built once per schema."""
    rules: list[type[ASTValidationRule]] = [
        depth_rule(settings.graphql_max_depth, None),
        aliases_rule(settings.graphql_max_aliases),
        cost_rule(settings.graphql_max_cost),
        PlainTextLiterals,
    ]
    if not settings.graphql_introspection:
        rules.append(NoSchemaIntrospectionCustomRule)
    return rules


def schema_extensions(settings: GatewaySettings) -> list[Callable[[], Any]]:
    """Extension factories for `build_schema`: the rules (the same list object every time)
    and the token limit of the parser."""
    rules = validation_rules(settings)
    return [
        partial(MaxTokensLimiter, max_token_count=settings.graphql_max_tokens),
        partial(AddValidationRules, rules),
        PlainTextVariables,
    ]


def json_object(data: str | bytes) -> Any:
    """A request's JSON, which must be an object (or a batch of objects): anything else (a bare
    string, a number) raises JSONDecodeError, which Strawberry answers 400, where its own code
    would crash on it (500)."""
    value = orjson.loads(data)
    if isinstance(value, dict) or (
        isinstance(value, list) and all(isinstance(item, dict) for item in value)
    ):
        return value
    raise orjson.JSONDecodeError("a GraphQL request is a JSON object", "", 0)


def too_large_message(max_bytes: int) -> str:
    """The sentence of a 413."""
    return f"The request body is larger than {max_bytes} bytes."


class BodySizeLimit:
    """Answers 413 (as a GraphQL error body) when a request body is over `max_bytes`: at once
    from Content-Length, else while it arrives (the body is then held and replayed)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = next((v for k, v in scope["headers"] if k == b"content-length"), None)
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            await self._refuse(send)
            return
        messages: list[Message] = []
        size = 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break
            size += len(message.get("body", b""))
            if size > self.max_bytes:
                await self._refuse(send)
                return
            if not message.get("more_body", False):
                break

        async def replay() -> Message:
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, send: Send) -> None:
        error = BadUserInput(too_large_message(self.max_bytes))
        body = orjson.dumps(
            {"errors": [{"message": error.message, "extensions": {"code": error.code.value}}]}
        )
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


class ClientAddress:
    """Keeps the client's address for the downstream calls of this request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        client = scope.get("client")
        token = _client_address.set(client[0] if client else None)
        try:
            await self.app(scope, receive, send)
        finally:
            _client_address.reset(token)


def cors_origins(settings: GatewaySettings) -> list[str]:
    """CORS_ORIGINS parsed (comma-separated; blanks dropped)."""
    return [o.strip() for o in settings.cors_origins.split(",") if o.strip()]


def install_edge(app: FastAPI, settings: GatewaySettings) -> None:
    """Add the body limit, the client address and (if origins are listed) CORS to the app."""
    app.add_middleware(ClientAddress)
    # Runs before ClientAddress: behind TRUSTED_PROXIES the client is the one they name.
    trust_forwarded_for(app, settings.trusted_proxies)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_request_body_bytes)
    origins = cors_origins(settings)
    if origins:
        # Added last, so it runs first: a preflight is answered before any other check.
        app.add_middleware(
            CORSMiddleware,
            allow_origins=origins,
            allow_methods=["GET", "POST"],
            allow_headers=[
                "authorization",
                "content-type",
                "x-correlation-id",
                # What Apollo's clients send to pass the CSRF rule (http_transport.py).
                "apollo-require-preflight",
                "x-apollo-operation-name",
            ],
        )


TOO_MANY_ORDERS = "Too many orders; try again later."
TOO_MANY_RECOMMENDATIONS = "Too many recommendation requests; try again later."


@dataclass(frozen=True, slots=True)
class UserLimits:
    """Per-user limits of the expensive fields, counted in Redis per call (so per alias)."""

    limiter: RateLimiter
    place_order_rule: Rule
    recommendation_rule: Rule

    @classmethod
    def from_settings(cls, settings: GatewaySettings) -> UserLimits:
        """The limiter on the gateway's Redis and the rules the settings name."""
        return cls(
            limiter=RateLimiter.from_settings(settings),
            place_order_rule=Rule("place-order", parse_limit(settings.place_order_limit_per_user)),
            recommendation_rule=Rule(
                "recommendation", parse_limit(settings.recommendation_limit_per_user)
            ),
        )

    async def place_order(self, user_id: str) -> None:
        """Count one placeOrder of the user; RATE_LIMITED once over the limit."""
        await self.limiter.hit(self.place_order_rule, user_id, TOO_MANY_ORDERS)

    async def recommendation(self, user_id: str) -> None:
        """Count one productRecommendation of the user; RATE_LIMITED once over the limit."""
        await self.limiter.hit(self.recommendation_rule, user_id, TOO_MANY_RECOMMENDATIONS)


TOO_MANY_CONNECTIONS = "Too many subscription connections for this user; close one first."


@dataclass
class ConnectionSlots:
    """Subscription (WebSocket) connections open per user in this gateway process."""

    per_user: int
    _open: Counter[str] = field(default_factory=Counter)

    def take(self, user_id: str) -> None:
        """Count a new connection of the user; RATE_LIMITED when they already have `per_user`."""
        if self._open[user_id] >= self.per_user:
            raise RateLimited(TOO_MANY_CONNECTIONS)
        self._open[user_id] += 1

    def give_back(self, user_id: str) -> None:
        """A connection of the user has closed."""
        self._open[user_id] -= 1
        if self._open[user_id] <= 0:
            del self._open[user_id]

    def open_for(self, user_id: str) -> int:
        """How many connections the user has open here."""
        return self._open[user_id]
