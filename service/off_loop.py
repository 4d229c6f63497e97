"""The service's one way off the event loop: blocking work (the store's synchronous SQLAlchemy calls,
decoding an image, identifying languages) runs in a worker thread, so the event loop keeps serving
other requests meanwhile. The request's context (its stage timings) goes along."""

import asyncio
import functools
from collections.abc import Awaitable, Callable
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")


async def in_thread(function: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """`function(*args, **kwargs)` in a worker thread, awaited."""
    return await asyncio.to_thread(function, *args, **kwargs)


def off_the_loop(method: Callable[P, T]) -> Callable[P, Awaitable[T]]:
    """A blocking method made awaitable: each call runs `in_thread`."""

    @functools.wraps(method)
    async def awaited(*args: P.args, **kwargs: P.kwargs) -> T:
        return await in_thread(method, *args, **kwargs)

    return awaited
