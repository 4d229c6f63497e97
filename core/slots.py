"""The three model slots of a request, box detection, OCR and translation, as one type used everywhere
inside: the reader's selection, a request's overrides, the catalogue's lists, a bulk run's choices.

Outside spellings stay at their one boundary, each translated there: the extension's request fields
(`box_model_id`, ...: `deployments/http_api.py`) and answer fields (`BOXModels`, `box_selected`,
`box_model`: `core/answers.py`), the operator's YAML keys (`default_selection.box_model`:
`core/settings.py`), the store's setting keys and a bulk run's Parquet columns.
"""

from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Generic, Literal, TypeVar

ModelKind = Literal["box", "ocr", "tsl"]
KINDS: tuple[ModelKind, ...] = ("box", "ocr", "tsl")
"""In the order a request runs them."""

T = TypeVar("T")
U = TypeVar("U")


@dataclass(frozen=True)
class ModelSlots(Generic[T]):
    """One value per model slot. Iterating gives `(kind, value)` pairs in `KINDS` order."""

    box: T
    ocr: T
    tsl: T

    @classmethod
    def by_kind(cls, value_of: Callable[[ModelKind], T]) -> "ModelSlots[T]":
        return cls(*(value_of(kind) for kind in KINDS))

    def get(self, kind: ModelKind) -> T:
        return getattr(self, kind)

    def with_(self, kind: ModelKind, value: T) -> "ModelSlots[T]":
        return replace(self, **{kind: value})

    def map(self, change: Callable[[T], U]) -> "ModelSlots[U]":
        return ModelSlots(change(self.box), change(self.ocr), change(self.tsl))

    def or_(self, fallback: "ModelSlots[U]") -> "ModelSlots[T | U]":
        """Each slot's value, or the fallback's where it is empty (None or ""): a choice over the defaults."""
        return ModelSlots(self.box or fallback.box, self.ocr or fallback.ocr, self.tsl or fallback.tsl)

    def __iter__(self) -> Iterator[tuple[ModelKind, T]]:
        return ((kind, self.get(kind)) for kind in KINDS)


def chosen(box: str | None = None, ocr: str | None = None, tsl: str | None = None) -> ModelSlots[str | None]:
    """Models named for some slots: None leaves a slot as it is (the selection's model, or the stored one)."""
    return ModelSlots(box, ocr, tsl)


NO_CHOICE = chosen()
"""No slot named: a request that keeps the selection, an update that changes no model."""
