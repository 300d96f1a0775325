"""The execution context of every operation, without the reference cycle graphql-core builds.

graphql-core 3.3 gives each operation's executor `async_helpers` holding two of its own bound
methods, so the executor refers to itself through them: a cycle that only the garbage
collector frees, and with it everything the executor reaches (the request, the context, the
parsed fields). Measured with `gc.DEBUG_SAVEALL` under `placeOrder`, that cycle kept most of the
gateway's per-request objects alive until a collection. Here the helpers reach the executor
through weak references, so each operation is freed by reference counting as soon as it ends.
"""

from __future__ import annotations

import weakref
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from graphql.type.definition import GraphQLResolveInfoHelpers
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext


def _through(method: weakref.WeakMethod[Callable[..., Any]]) -> Callable[..., Any]:
    """A function calling the method while its executor lives (resolvers run only then)."""

    def call(*args: Any, **kwargs: Any) -> Any:
        bound = method()
        if bound is None:
            raise RuntimeError("the operation has ended")
        return bound(*args, **kwargs)

    return call


class AcyclicExecutionContext(StrawberryGraphQLCoreExecutionContext):
    """Strawberry's execution context whose resolver helpers hold it weakly."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        gather: Callable[[Sequence[Awaitable[Any]]], Awaitable[list[Any]]] = _through(
            weakref.WeakMethod(self.gather_async_work)
        )
        track: Callable[..., Any] = _through(weakref.WeakMethod(self.track_async_work))
        self.async_helpers = GraphQLResolveInfoHelpers(gather=gather, track=track)
