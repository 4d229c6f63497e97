"""The part every model deployment shares: multiplexed model loading and usage counters."""

import asyncio
import logging
import math
import sys
from collections import Counter
from pathlib import Path
from typing import Any, ClassVar

import ray
from ray import serve

from core.settings import BatchedDeploymentSettings, ModelDeploymentSettings, WeightSources
from models_registry import ModelKind, Registry
from models_registry.backends.base import ModelBackend, Runtime

log = logging.getLogger(__name__)


def replica_device() -> str:
    """"cuda" when Ray gave this replica a GPU, else "cpu"."""
    try:
        return "cuda" if ray.get_gpu_ids() else "cpu"
    except Exception:  # outside a Ray worker (unit tests)
        return "cpu"


def replica_cpus() -> int:
    try:
        cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", 1)
    except Exception:
        cpus = 1
    return max(1, math.ceil(cpus))


def apply_batching(batch_method: Any, settings: BatchedDeploymentSettings) -> None:
    """Set a `@serve.batch` method's knobs from config (the decorator's values are only defaults)."""
    batch_method.set_max_batch_size(settings.max_batch_size)
    batch_method.set_batch_wait_timeout_s(settings.batch_wait_timeout_s)


class MultiplexedModelDeployment:
    """Base of BoxDetector, OCRReader and Translator.

    A replica keeps up to `max_models_per_replica` models (LRU); the router sends a request to
    a replica that already holds its model. `stats()` counts backend calls (forward passes)
    and items per model, which tests and benchmarks read to prove batching and coalescing.
    """

    kind: ClassVar[ModelKind]

    def __init__(self, settings: ModelDeploymentSettings, registry_dirs: list[Path], weights: WeightSources):
        self.registry = Registry.load(registry_dirs, weights)
        self.runtime = Runtime(replica_device(), replica_cpus(), settings.gpu_half_precision)
        self.calls: Counter[str] = Counter()
        self.items: Counter[str] = Counter()
        self.loads: Counter[str] = Counter()

        async def load(model_id: str) -> ModelBackend:
            return await asyncio.to_thread(self._load, model_id)

        self._model = serve.multiplexed(max_num_models_per_replica=settings.max_models_per_replica)(load)

    def _load(self, model_id: str) -> ModelBackend:
        log.info("loading %s model %s on %s", self.kind, model_id, self.runtime.device)
        backend = self.registry.load_backend(model_id, self.kind, self.runtime)
        if "torch" in sys.modules:
            sys.modules["torch"].set_num_threads(self.runtime.threads)
        self.loads[model_id] += 1
        return backend

    async def model(self) -> tuple[str, ModelBackend]:
        model_id = serve.get_multiplexed_model_id()
        return model_id, await self._model(model_id)

    def record(self, model_id: str, calls: int, items: int) -> None:
        self.calls[model_id] += calls
        self.items[model_id] += items

    async def warm(self) -> str:
        """Load the request's model (set_models calls this so the first image is fast)."""
        await self.model()
        return self.runtime.device

    def stats(self) -> dict[str, Any]:
        return {"device": self.runtime.device, "calls": dict(self.calls), "items": dict(self.items),
                "loads": dict(self.loads)}
