"""Models as data (YAML entries) and the backends that load and run each family."""

from .registry import Availability, Registry, RegistryError
from .schema import ANY_LANGUAGE, ModelEntry, ModelKind

__all__ = ["ANY_LANGUAGE", "Availability", "ModelEntry", "ModelKind", "Registry", "RegistryError"]
