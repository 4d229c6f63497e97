"""The pipeline's model stages (`service.stages.ModelStages`) as calls to the model deployments'
handles: what the ingress gives the service in production."""

from typing import Any

import numpy as np
import ray
from ray.serve.handle import DeploymentHandle

from core.boxes import Block
from core.glossary import Glossary
from core.slots import ModelKind, ModelSlots


class ServeStages:
    """The model stages as calls to the model deployments' handles."""

    def __init__(self, box: DeploymentHandle, ocr: DeploymentHandle, tsl: DeploymentHandle):
        self.handles = ModelSlots(box, ocr, tsl)

    def _for(self, kind: ModelKind, model_id: str) -> DeploymentHandle:
        return self.handles.get(kind).options(multiplexed_model_id=model_id)

    async def detect(self, model_id: str, image: np.ndarray, lang: str, options: dict[str, Any]) -> list[Block]:
        image_ref = ray.put(image)  # once, in the object store; the detector reads it by reference
        return await self._for("box", model_id).detect.remote([image_ref], lang, options)

    # One call per image (or text batch) carries all its crops or texts: the replica batches them with
    # those of concurrent requests, and the ingress pays for one Ray call instead of one per line.
    async def read(self, model_id: str, crops: list[np.ndarray], lang: str, options: dict[str, Any]) -> list[str]:
        return await self._for("ocr", model_id).read.remote(crops, lang, options)

    async def translate(self, model_id: str, texts: list[str], src: str, dst: str, options: dict,
                        glossary: Glossary) -> list[str]:
        return await self._for("tsl", model_id).translate.remote(texts, src, dst, options, glossary)

    async def warm(self, kind: ModelKind, model_id: str) -> None:
        await self._for(kind, model_id).warm.remote()
