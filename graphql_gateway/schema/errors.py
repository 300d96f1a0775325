"""Errors as clients see them: a GraphQL error with `extensions.code` from the contract and one
clear sentence. Errors of the services (`AppError`) keep their code and message; anything else a
resolver raises is logged and masked as INTERNAL_SERVER_ERROR. Parse and validation errors
(no field path) stay GraphQL's own."""

from __future__ import annotations

from collections.abc import Iterator

from graphql import GraphQLError
from strawberry.extensions import SchemaExtension

from shared.errors import AppError, InternalError
from shared.logging import get_logger

log = get_logger(__name__)


def app_error_of(error: GraphQLError) -> AppError | None:
    """The contract error a GraphQL error stands for; None for GraphQL's own errors."""
    original = error.original_error
    if isinstance(original, AppError):
        return original
    if error.path is None and (original is None or isinstance(original, GraphQLError)):
        return None
    return InternalError()


def to_client_error(error: GraphQLError) -> GraphQLError:
    """The error as the client sees it: contract code and sentence, nothing internal."""
    app_error = app_error_of(error)
    if app_error is None:
        return error
    return GraphQLError(
        app_error.message,
        nodes=error.nodes,
        source=error.source,
        positions=error.positions,
        path=error.path,
        extensions={"code": app_error.code.value},
    )


def log_errors(errors: list[GraphQLError]) -> None:
    """Log each error once: an unexpected one with its traceback, an expected one briefly."""
    for error in errors:
        original = error.original_error
        if isinstance(original, AppError):
            log.info(
                "graphql field failed",
                code=original.code.value,
                message=original.message,
                path=error.path,
            )
        elif app_error_of(error) is None:
            # The message can echo a variable's value (a password): keep it out of the logs.
            log.info("graphql request rejected", locations=error.locations)
        else:
            log.error("graphql field crashed", path=error.path, exc_info=original or error)


class ContractErrors(SchemaExtension):
    """Rewrites the result's errors with `to_client_error` once the operation has run."""

    def on_operation(self) -> Iterator[None]:
        yield
        result = self.execution_context.result
        errors = getattr(result, "errors", None)
        if result is not None and errors:
            result.errors = [to_client_error(error) for error in errors]
