"""Real offline models loaded for a test, or a failure that says what to install: a test that needs a model
fails rather than skips where the model is missing (`make test` installs them as root)."""

from models_registry import Registry
from models_registry.backends.base import ModelBackend, Runtime


def usable_backend(registry: Registry, model_id: str, kind: str, runtime: Runtime | None = None) -> ModelBackend:
    availability = registry.availability(model_id)
    assert availability.usable, f"{model_id} cannot run here: {availability.reason} (`make test` installs it as root)"
    return registry.load_backend(model_id, kind, runtime)
