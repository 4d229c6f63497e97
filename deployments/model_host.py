"""The part every model deployment shares around `inference.worker`: multiplexed model loading,
batching knobs, usage counters, metrics and what `/status` shows."""

import asyncio
import functools
import logging
import os
import time
import weakref
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import ray
from ray import serve

from core.settings import BatchingSettings, ModelDeploymentSettings, WeightSources
from inference.worker import LoadRate, ModelWorker
from models_registry import ModelKind, Registry
from models_registry.backends.base import ModelBackend, Runtime

from . import metrics, status_board

log = logging.getLogger(__name__)
T = TypeVar("T")


def device_description(runtime: Runtime) -> str:
    """The device as an operator wants to see it: which GPU, or how many CPU threads."""
    if runtime.device != "cuda":
        return f"cpu ({runtime.threads} thread{'s' if runtime.threads > 1 else ''})"
    import torch

    return f"cuda: GPU {','.join(map(str, ray.get_gpu_ids()))} ({torch.cuda.get_device_name(0)})"


class MultiplexedModelDeployment:
    """Base of BoxDetector, OCRReader and Translator.

    A replica keeps up to `max_models_per_replica` models (LRU); the router sends a request to
    a replica that already holds its model. `stats()` counts backend calls (forward passes)
    and items per model, which tests and benchmarks read to prove batching and coalescing.
    """

    kind: ClassVar[ModelKind]

    def __init__(self, settings: ModelDeploymentSettings, registry_dirs: list[Path], weights: WeightSources,
                 model_settings: dict[str, dict[str, Any]]):
        self.worker = ModelWorker(self.kind, settings, Registry.load(registry_dirs, weights, model_settings))
        # On a CPU one model call at a time, on the replica's threads: concurrent requests queue here
        # instead of multiplying threads beyond the replica's share. A GPU takes several at once.
        self._compute = ThreadPoolExecutor(max_workers=1 if self.worker.runtime.device == "cpu" else 4,
                                           thread_name_prefix=f"{type(self).__name__}-model")
        self.calls: Counter[str] = Counter()
        self.items: Counter[str] = Counter()
        self.loads: Counter[str] = Counter()
        self.loaded: dict[str, str] = {}
        """Loaded model ids and the engine running each (what /status shows)."""
        self._preloaded = self._preload(settings.max_models_per_replica)

        load_rate = LoadRate(settings.max_model_loads_per_minute)

        async def load(model_id: str) -> ModelBackend:
            backend = self._preloaded.pop(model_id, None)
            if backend is None:
                load_rate.take(model_id)
                if len(self.loaded) >= settings.max_models_per_replica:
                    self._preloaded.clear()  # preloads no request asked for give way first
                backend = await asyncio.to_thread(self._load, model_id)
            return backend

        self._model = serve.multiplexed(max_num_models_per_replica=settings.max_models_per_replica)(load)
        self._report_status()

    def _preload(self, most: int) -> dict[str, ModelBackend]:
        """Load what the deployment's live replicas hold, before Serve routes requests here: a replica
        added under load (autoscaling, a rolling deploy) then serves at once instead of stalling the
        requests it is given while it loads. The multiplexer takes each over on its first request."""
        preloaded = {}
        for model_id in status_board.models_held_by_siblings(type(self).__name__)[:most]:
            try:
                preloaded[model_id] = self._load(model_id)
            except Exception as exc:  # the model is loaded again (and fails visibly) when a request asks
                log.warning("could not preload %s model %s: %s", self.kind, model_id, exc)
        return preloaded

    def status_info(self) -> dict[str, Any]:
        """What `GET /status` shows of this replica."""
        return {"deployment": type(self).__name__, "device": device_description(self.worker.runtime),
                "half_precision": self.worker.runtime.half_precision, "node": ray.util.get_node_ip_address(),
                "node_id": ray.get_runtime_context().get_node_id(), "pid": os.getpid(),
                "loaded": sorted(self.loaded), "engines": dict(sorted(self.loaded.items()))}

    def _report_status(self) -> None:
        status_board.report(self.status_info())

    def _load(self, model_id: str) -> ModelBackend:
        log.info("loading %s model %s on %s", self.kind, model_id, self.worker.runtime.device)
        started = time.perf_counter()
        backend = self.worker.load(model_id)
        self.loads[model_id] += 1
        self.loaded[model_id] = backend.engine
        weakref.finalize(backend, self._unloaded, model_id)  # Serve drops the least recently used
        metrics.model_loaded(model_id, time.perf_counter() - started, len(self.loaded))
        self._report_status()
        return backend

    def _unloaded(self, model_id: str) -> None:
        self.loaded.pop(model_id, None)
        self.worker.unloaded(model_id)
        metrics.model_unloaded(len(self.loaded))
        self._report_status()

    async def compute(self, function: Callable[..., T], *args: Any) -> T:
        """Run a model call on this replica's compute thread(s), off the event loop."""
        return await asyncio.get_running_loop().run_in_executor(self._compute, functools.partial(function, *args))

    async def model(self) -> tuple[str, ModelBackend]:
        model_id = serve.get_multiplexed_model_id()
        return model_id, await self._model(model_id)

    def record(self, model_id: str, calls: int, items: int) -> None:
        """Count one served batch of `items` that took `calls` backend calls."""
        self.calls[model_id] += calls
        self.items[model_id] += items
        metrics.batch_served(model_id, items, len(self.loaded))

    async def warm(self) -> str:
        """Load the request's model (set_models calls this so the first image is fast)."""
        await self.model()
        return self.worker.runtime.device

    def stats(self) -> dict[str, Any]:
        """What `/status` shows, with the usage counters."""
        return {**self.status_info(), "calls": dict(self.calls), "items": dict(self.items), "loads": dict(self.loads)}


class BatchedModelDeployment(MultiplexedModelDeployment):
    """OCRReader and Translator: one `@serve.batch` method whose knobs come from Serve's user_config
    (`reconfigure`), which a config's `deployments:` entry may also set."""

    batch_method_name: ClassVar[str]
    batching = BatchingSettings()

    def reconfigure(self, user_config: dict[str, Any]) -> None:
        self.batching = BatchingSettings(**user_config)
        batch_method = getattr(self, self.batch_method_name)
        batch_method.set_max_batch_size(self.batching.max_batch_size)
        batch_method.set_batch_wait_timeout_s(self.batching.batch_wait_timeout_s)
        self._report_status()

    def status_info(self) -> dict[str, Any]:
        return {**super().status_info(), "batching": self.batching.model_dump()}
