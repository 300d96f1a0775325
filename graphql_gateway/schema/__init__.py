"""The public GraphQL schema (docs/contract.md section 4, with the Subscription type), with the
contract's error mapping."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import strawberry
from graphql import GraphQLError
from strawberry.extensions import ParserCache, ValidationCache
from strawberry.schema.config import StrawberryConfig
from strawberry.types import ExecutionContext

from graphql_gateway.answers import MarkCacheableAnswers
from graphql_gateway.schema.errors import ContractErrors, log_errors
from graphql_gateway.schema.execution import AcyclicExecutionContext
from graphql_gateway.schema.mutations import Mutation
from graphql_gateway.schema.queries import Query
from graphql_gateway.schema.subscriptions import Subscription, SubscriptionsOverWebSocketOnly

DEFAULT_DOCUMENT_CACHE_SIZE = 256


class GatewaySchema(strawberry.Schema):
    """Logs errors our way (no traceback for an expected error, never a variable's value)."""

    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        log_errors(errors)


def build_schema(
    document_cache_size: int = DEFAULT_DOCUMENT_CACHE_SIZE,
    limits: Sequence[Callable[[], Any]] = (),
) -> GatewaySchema:
    """The schema with parse and validation caches, the contract's error mapping, and the
    extensions that limit a document (`graphql_gateway.limits.schema_extensions`)."""
    return GatewaySchema(
        query=Query,
        mutation=Mutation,
        subscription=Subscription,
        config=StrawberryConfig(auto_camel_case=False),
        execution_context_class=AcyclicExecutionContext,
        extensions=[
            *limits,
            partial(ParserCache, maxsize=document_cache_size),
            partial(ValidationCache, maxsize=document_cache_size),
            SubscriptionsOverWebSocketOnly,
            ContractErrors,
            MarkCacheableAnswers,
        ],
    )


schema = build_schema()

__all__ = ["GatewaySchema", "build_schema", "schema"]
