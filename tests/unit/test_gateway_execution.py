"""graphql_gateway/schema/execution.py: an operation's executor is freed by reference counting
when the operation ends (graphql-core's own refers to itself through its resolver helpers),
and the helpers still reach it while it runs."""

from __future__ import annotations

import gc
from typing import Any

from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext

from graphql_gateway.schema import schema
from graphql_gateway.schema.execution import AcyclicExecutionContext


async def test_an_operation_leaves_no_executor_to_the_garbage_collector() -> None:
    await schema.execute("{ __typename }")  # caches warmed: parsed and validated once
    gc.collect()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        for _ in range(10):
            result = await schema.execute("{ __typename }")
            assert result.errors is None
        gc.collect()
        executors = [o for o in gc.garbage if isinstance(o, StrawberryGraphQLCoreExecutionContext)]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
    assert executors == []


async def test_the_helpers_reach_the_executor_while_it_runs() -> None:
    seen: list[Any] = []

    class Recording(AcyclicExecutionContext):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            seen.append(self)

    execution = schema.execution_context_class
    schema.execution_context_class = Recording
    try:
        await schema.execute("{ __typename }")
    finally:
        schema.execution_context_class = execution
    helpers = seen[0].async_helpers

    async def two() -> int:
        return 2

    assert await helpers.gather([two(), two()]) == [2, 2]
