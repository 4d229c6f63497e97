"""What the service reports while it works: how long each stage took and whether stored results
were found. Serve-free: the ingress plugs in Ray Serve metrics (`deployments.metrics`).

The stage timings of the request in flight go to a context variable, so the ingress can write one
log line per request with them; asyncio tasks and `asyncio.to_thread` carry the context along.
"""

import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from contextvars import ContextVar

from core.slots import KINDS

STAGES = ("decode", *KINDS)

_request_timings: ContextVar[dict[str, float] | None] = ContextVar("request_timings", default=None)
_metered: ContextVar["Metered | None"] = ContextVar("metered", default=None)


@contextmanager
def request_timings() -> Iterator[dict[str, float]]:
    """Collect the stage timings (seconds) of the request handled inside this block."""
    timings: dict[str, float] = {}
    token = _request_timings.set(timings)
    try:
        yield timings
    finally:
        _request_timings.reset(token)


class Metered:
    """The model work of one request: allowed (or refused) before each stage computes, counted after."""

    def __init__(self, before_computing: Callable[[], None]):
        self.before_computing = before_computing
        self.results = 0
        """Model outputs computed (detection runs, texts read, texts translated): each is a stored result."""


@contextmanager
def metered(before_computing: Callable[[], None]) -> Iterator[Metered]:
    """Meter the model work of the request handled inside this block (tasks started inside share it):
    `before_computing` may refuse a stage before it runs; answers from the store cost nothing."""
    work = Metered(before_computing)
    token = _metered.set(work)
    try:
        yield work
    finally:
        _metered.reset(token)


class Observer:
    """Adds stage timings to the request's; subclasses export them and the cache results too."""

    def stage_done(self, stage: str, model_id: str, seconds: float, items: int) -> None:
        timings = _request_timings.get()
        if timings is not None:
            timings[stage] = timings.get(stage, 0.0) + seconds
        work = _metered.get()
        if work is not None and stage != "decode":
            work.results += items

    def cache_lookup(self, stage: str, hits: int, misses: int) -> None:
        """`hits` of the stage's inputs had a stored result, `misses` had to run the model."""

    @asynccontextmanager
    async def timed(self, stage: str, model_id: str, items: int) -> AsyncIterator[None]:
        work = _metered.get()
        if work is not None and stage != "decode":
            work.before_computing()
        started = time.perf_counter()
        try:
            yield
        finally:
            self.stage_done(stage, model_id, time.perf_counter() - started, items)
