"""Every text argument of the gateway refuses control characters (shared/text.py's rule) with
BAD_USER_INPUT before any resolver runs: string literals of the document in validation (cached
with it), variables before execution."""

from __future__ import annotations

from collections.abc import Iterator

from graphql import ASTValidationRule, ExecutionResult, GraphQLError, StringValueNode
from strawberry.extensions import SchemaExtension

from shared.errors import BadUserInput
from shared.text import CONTROL_CHARACTERS_MESSAGE, has_control_characters, holds_control_characters


class PlainTextLiterals(ASTValidationRule):
    """A string literal (argument, default value) holding a control character is refused."""

    def enter_string_value(self, node: StringValueNode, *_args: object) -> None:
        if has_control_characters(node.value):
            self.report_error(
                GraphQLError(
                    CONTROL_CHARACTERS_MESSAGE,
                    [node],
                    extensions={"code": BadUserInput.code.value},
                )
            )


class PlainTextVariables(SchemaExtension):
    """An operation whose variables hold a control character anywhere is answered
    BAD_USER_INPUT instead of being executed."""

    def on_execute(self) -> Iterator[None]:
        execution = self.execution_context
        if execution.result is None and holds_control_characters(execution.variables):
            error = BadUserInput(CONTROL_CHARACTERS_MESSAGE)
            execution.result = ExecutionResult(
                data=None, errors=[GraphQLError(error.message, original_error=error)]
            )
        yield
