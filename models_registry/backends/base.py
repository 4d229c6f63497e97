"""What a backend family provides: a probe of its software, and one class per model kind.

A backend class turns a registry entry into a loaded model (`__init__` loads, `close` frees)
and runs it on batches. Families import their heavy libraries only when a model loads, so the
ingress can probe availability without paying for torch.
"""

import contextlib
import importlib.metadata
import importlib.util
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict

from core.boxes import Box
from core.glossary import Glossary
from core.options import OptionSpec
from core.settings import WeightSources

from ..schema import ModelEntry, ModelKind


@dataclass(frozen=True)
class Probe:
    """Whether a family's software is present: its version, or why it is not usable."""

    version: str | None
    problem: str | None = None

    @property
    def ok(self) -> bool:
        return self.problem is None


@dataclass(frozen=True)
class Family:
    name: str
    description: str
    homepage: str
    install_hint: str
    """What to add (pip or Debian package) when the software is missing."""
    probe: Callable[[], Probe]
    """Cheap check that the software is present; must not import heavy libraries."""
    backends: dict[ModelKind, type["ModelBackend"]] = field(default_factory=dict)
    warning: str | None = None


def probe_distribution(distribution: str, install_hint: str) -> Probe:
    if importlib.util.find_spec(distribution.replace("-", "_")) is None:
        return Probe(None, f"Python package {distribution!r} is not installed ({install_hint}).")
    return Probe(importlib.metadata.version(distribution))


@dataclass(frozen=True)
class Runtime:
    """Where a model runs: what Ray gave the replica, and where weights are looked for (the
    registry fills `weights` in with its own, so availability and loading search the same places)."""

    device: str = "cpu"
    """"cuda" when Ray gave the replica a GPU, else "cpu"."""
    threads: int = 1
    """CPUs Ray gave the replica (rounded up): size thread pools to this."""
    half_precision: bool = False
    """float16 weights; only honoured on a GPU."""
    weights: WeightSources = field(default_factory=WeightSources)


class NoSettings(BaseModel):
    """A backend without entry settings: any key in an entry's `settings` is an error."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelBackend(ABC):
    """A loaded model, with its entry's backend-specific `settings` validated by `Settings`."""

    kind: ClassVar[ModelKind]
    Settings: ClassVar[type[BaseModel]] = NoSettings
    declared_options: ClassVar[dict[str, OptionSpec]] = {}
    """The options this backend's code reads, with type, default, bounds and description: every
    entry of the backend has them (`get_active_options` shows them), and an entry changes only
    their defaults (`default_options`)."""

    def __init__(self, entry: ModelEntry, runtime: Runtime):
        self.entry = entry
        self.runtime = runtime
        self.settings = self.Settings.model_validate(entry.settings)

    @classmethod
    def missing_weights(cls, entry: ModelEntry, weights: WeightSources) -> str | None:
        """Why this entry's weights cannot be found, or None when they can (or may be downloaded)."""
        return None

    @classmethod
    def downloadable_from(cls, entry: ModelEntry, weights: WeightSources) -> str | None:
        """The Hugging Face repository to fetch this entry's missing weights from, where the config
        allows it; None when they are here or cannot be fetched."""
        return None

    @property
    def engine(self) -> str:
        """What runs the model, in which precision, on which device: `/status` shows it per loaded model.
        Backends that run on a GPU or in reduced precision say so; this default fits CPU-only tools."""
        return f"{self.entry.backend} on cpu"

    @property
    def computes_on_torch(self) -> bool:
        """Whether torch runs this model's networks, so that torch's thread pool gets the replica's
        share (`inference.worker.limit_library_threads`); otherwise it gets one thread."""
        return False

    def close(self) -> None:  # noqa: B027 - optional hook, most backends free memory on GC
        """Free what the model holds (GPU memory, thread pools); may be called twice."""

    def __del__(self) -> None:
        # Serve calls this when it evicts the model from a replica (LRU), the GC again later;
        # a finalizer must never raise.
        with contextlib.suppress(Exception):
            self.close()


class BoxBackend(ModelBackend):
    kind = "box"

    @abstractmethod
    def detect(self, image: np.ndarray, lang: str, options: dict[str, Any]) -> list[Box]:
        """Single text boxes (lines or columns) of an RGB image, in pixels."""

    def detect_many(self, images: list[np.ndarray], lang: str, options: dict[str, Any]) -> list[list[Box]]:
        """`detect` of each image. Detectors that run several images in one forward pass (on a GPU,
        far faster than one by one) override it; this default runs them one by one."""
        return [self.detect(image, lang, options) for image in images]


class OCRBackend(ModelBackend):
    kind = "ocr"

    @abstractmethod
    def read(self, crops: list[np.ndarray], lang: str, options: dict[str, Any]) -> list[str]:
        """Text of each RGB crop, one string per crop (newlines between lines)."""


class TranslationBackend(ModelBackend):
    kind = "tsl"
    translates_pages: ClassVar[bool] = False
    """True for a model that translates one image's texts as a whole, in reading order (a language
    model that sees the page), with `translate_page`: the Translator gives it each request's texts in
    one call of their own instead of batching texts across requests. Around the other models the
    Translator substitutes the glossary's terms itself."""
    calls_a_server: ClassVar[bool] = False
    """True for a model served elsewhere and metered per call (a language model behind an API): a
    client without the API token runs it with its entry's options, bar the ranges the operator allows."""
    passes_through: ClassVar[bool] = False
    """True for a "model" that gives back the text it is given: never chosen to translate a language
    that was detected automatically (such a text is left as read anyway)."""

    @abstractmethod
    def translate(self, texts: list[str], src: str, dst: str, options: dict[str, Any]) -> list[str]:
        """One translation per text. `src`/`dst` are the backend's own language codes."""

    def translate_page(self, texts: list[str], src: str, dst: str, options: dict[str, Any],
                       glossary: Glossary) -> list[str]:
        """A page's texts in reading order, translated together, the glossary's terms as it gives them
        (backends with `translates_pages`)."""
        raise NotImplementedError(f"{type(self).__name__} translates texts one by one, not pages")
