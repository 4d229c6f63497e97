"""Batches that mix requests with different languages and options: alike items form a group, and each
group is one backend call (one forward pass)."""

from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")
R = TypeVar("R")


def group_key(*parts: Any) -> tuple:
    """What items must share to go to the backend together; option dicts compare by their items."""
    return tuple(tuple(sorted(part.items())) if isinstance(part, dict) else part for part in parts)


def by_group(items: list[T], key: Callable[[T], tuple], run: Callable[[list[T]], list[R]],
             ) -> tuple[list[R | Exception], int]:
    """Run each group of alike items as one backend call; results in item order, and the calls made.

    A group that fails gets its exception in place of its results: the requests that shared a
    batch with a bad one still get their answers (the deployment raises it to its own caller only).
    """
    groups: dict[tuple, list[int]] = {}
    for index, item in enumerate(items):
        groups.setdefault(key(item), []).append(index)
    results: list = [""] * len(items)
    for indexes in groups.values():
        try:
            outputs: list = run([items[i] for i in indexes])
        except Exception as exc:
            outputs = [exc] * len(indexes)
        for index, output in zip(indexes, outputs, strict=True):
            results[index] = output
    return results, len(groups)


def raise_failure(results: list[T | Exception]) -> list[T]:
    """One request's results: the first failure among them is raised to that request alone."""
    for result in results:
        if isinstance(result, Exception):
            raise result
    return results
