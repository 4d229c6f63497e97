"""Waiting for something to become true, by polling: never a fixed sleep before a check."""

import time
from collections.abc import Callable
from typing import TypeVar

import httpx

T = TypeVar("T")


def wait_for(condition: Callable[[], T], timeout_s: float = 60.0, what: str = "the condition",
             interval_s: float = 0.2) -> T:
    """The first truthy value `condition()` returns, polled every `interval_s`; an AssertionError naming
    `what` when `timeout_s` passes first."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout_s:g} s")
        time.sleep(interval_s)


def answers(http: httpx.Client, path: str = "/") -> bool:
    """Whether the server behind `http` answers `path` with 200 yet (a refused connection: not yet)."""
    try:
        return http.get(path).status_code == 200
    except httpx.TransportError:
        return False
