"""How the pipeline calls the model deployments: Serve handles in production (the ingress's
`ServeStages`), plain objects in unit tests. What the deployments do around their backends is
`inference/`, which bulk runs share."""

from typing import Any, Protocol

import numpy as np

from core.boxes import Block
from core.glossary import Glossary
from models_registry import ModelKind


class ModelStages(Protocol):
    async def detect(self, model_id: str, image: np.ndarray, lang: str, options: dict[str, Any]) -> list[Block]: ...

    async def read(self, model_id: str, crops: list[np.ndarray], lang: str, options: dict[str, Any]) -> list[str]: ...

    async def translate(
        self, model_id: str, texts: list[str], src: str, dst: str, options: dict[str, Any], glossary: Glossary
    ) -> list[str]: ...

    async def warm(self, kind: ModelKind, model_id: str) -> None: ...
