"""A span per GraphQL operation (when tracing is on): named `mutation placeOrder`, with the
operation's type, name and root fields. Never the document or its variables (a login's
password is in one or the other)."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

from graphql import OperationDefinitionNode
from strawberry.extensions import SchemaExtension

from shared import tracing

_OPERATION_NAME = re.compile(r"\s*(?:query|mutation|subscription)\s+([_A-Za-z][_0-9A-Za-z]*)")


def root_fields(document: Any, operation_name: str | None) -> list[str]:
    """The root field names of the operation that runs (the first when it has no name)."""
    for definition in getattr(document, "definitions", ()):
        if not isinstance(definition, OperationDefinitionNode):
            continue
        name = definition.name.value if definition.name else None
        if operation_name is None or name == operation_name:
            return [
                selection.name.value
                for selection in definition.selection_set.selections
                if hasattr(selection, "name")
            ]
    return []


class OperationSpan(SchemaExtension):
    """Wraps the execution of one operation in its span (child of the request's)."""

    def on_execute(self) -> Iterator[None]:
        context = self.execution_context
        name = context.operation_name
        fields = root_fields(context.graphql_document, name)
        operation_type = context.operation_type.value
        attributes: dict[str, Any] = {
            "graphql.operation.type": operation_type,
            "graphql.operation.name": name or ",".join(fields),
            "fleet.graphql.root_fields": fields,
        }
        with tracing.span(f"{operation_type} {name or ','.join(fields)}".strip(), attributes):
            yield


def mark_cached_answer(query: str | None, operation_name: str | None) -> None:
    """On the request's span, an answer from the answer cache (no operation ran, so no
    operation span): flagged, with the operation's name when the request gives one."""
    if not tracing.enabled():
        return
    name = operation_name
    if not name and query:
        # The first operation's name, without parsing the whole document.
        named = _OPERATION_NAME.match(query)
        name = named.group(1) if named else None
    attributes: dict[str, Any] = {"fleet.graphql.cached_answer": True}
    if isinstance(name, str) and name:
        attributes["graphql.operation.name"] = name
    tracing.annotate(attributes)


def tracing_extensions() -> list[Callable[[], Any]]:
    """The schema extensions of tracing: none when it is off (no cost per operation)."""
    return [OperationSpan] if tracing.enabled() else []
