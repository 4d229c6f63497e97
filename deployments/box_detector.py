"""BoxDetector: finds text lines in the whole image and merges them into blocks."""

from typing import Any

import ray
from ray import serve

from core.boxes import Block
from core.stages import detect_blocks

from .model_host import MultiplexedModelDeployment


@serve.deployment
class BoxDetector(MultiplexedModelDeployment):
    kind = "box"

    async def detect(self, image_ref: list[ray.ObjectRef], lang: str, options: dict[str, Any]) -> list[Block]:
        """`image_ref` wraps the object-store reference in a list so Ray passes it, not its value."""
        image = await image_ref[0]
        model_id, backend = await self.model()
        blocks = await self.compute(detect_blocks, backend, image, lang, options)
        self.record(model_id, calls=1, items=1)
        return blocks
