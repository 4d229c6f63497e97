"""What hosting a model on a Ray worker (a Serve replica, a bulk run's actor) takes: the worker's
device and CPU share, thread pools sized to that share, and a bound on how often it loads models."""

import math
import sys
import time
from collections import deque
from collections.abc import Callable

import ray

from core.errors import TooManyRequests
from core.settings import ModelDeploymentSettings
from models_registry import ModelKind, Registry
from models_registry.backends.base import ModelBackend, Runtime


def worker_device() -> str:
    """"cuda" when Ray gave this worker a GPU, else "cpu"."""
    try:
        return "cuda" if ray.get_gpu_ids() else "cpu"
    except Exception:  # outside a Ray worker (unit tests)
        return "cpu"


def worker_cpus() -> int:
    try:
        cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", 1)
    except Exception:
        cpus = 1
    return max(1, math.ceil(cpus))


def limit_library_threads(threads: int, torch_computes: bool) -> None:
    """Size the thread pools of the libraries a backend imported to the worker's CPU share, so workers
    that share a machine never oversubscribe it (ONNX Runtime and CTranslate2 take it per model).

    Torch gets the share only while a loaded model runs its networks on torch. Otherwise (EasyOCR on
    ONNX Runtime, whose pre- and post-processing make a few torch calls) it gets one thread: torch's
    OpenMP workers spin for a while after each of those calls and take the cores from ONNX Runtime
    (EasyOCR on ONNX over HTTP, one caller, 2 cores: 0.86 -> 0.93 images/s)."""
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads if torch_computes else 1)
    if "cv2" in sys.modules:
        sys.modules["cv2"].setNumThreads(threads)


class LoadRate:
    """At most `per_minute` model loads in any minute: a client that names another model on every
    request would otherwise keep the replica loading and evicting models."""

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic):
        self.started: deque[float] = deque(maxlen=per_minute)
        self.clock = clock

    def take(self, model_id: str) -> None:
        now = self.clock()
        if len(self.started) == self.started.maxlen and now - self.started[0] < 60:
            raise TooManyRequests(f"This replica loaded {self.started.maxlen} models in the last minute; "
                                  f"{model_id!r} is not loaded now. Try again shortly, or use the selected models.")
        self.started.append(now)


class ModelWorker:
    """The models of one kind that a worker process loads, each on the worker's device and CPU share
    (or the threads its settings name)."""

    def __init__(self, kind: ModelKind, settings: ModelDeploymentSettings, registry: Registry):
        self.kind = kind
        self.registry = registry
        self.runtime = Runtime(worker_device(), settings.threads or worker_cpus(), settings.gpu_half_precision)
        self._on_torch: set[str] = set()
        """Loaded model ids whose networks run on torch."""

    def load(self, model_id: str) -> ModelBackend:
        backend = self.registry.load_backend(model_id, self.kind, self.runtime)
        if backend.computes_on_torch:
            self._on_torch.add(model_id)
        limit_library_threads(self.runtime.threads, torch_computes=bool(self._on_torch))
        return backend

    def unloaded(self, model_id: str) -> None:
        """Forget a model the worker dropped: the next load sizes torch's pool without it."""
        self._on_torch.discard(model_id)
