"""BoxDetector: finds text lines in the whole image and merges them into blocks; images of concurrent
requests are batched per model, language and options (one forward pass on a GPU)."""

from typing import Any

import ray
from ray import serve

from core.boxes import Block
from inference.detection import DetectionItem, detect_grouped
from inference.grouping import raise_failure

from .model_host import BatchedModelDeployment


@serve.deployment
class BoxDetector(BatchedModelDeployment):
    kind = "box"
    batch_method_name = "_detect_batch"

    async def detect(self, image_ref: list[ray.ObjectRef], lang: str, options: dict[str, Any]) -> list[Block]:
        """`image_ref` wraps the object-store reference in a list so Ray passes it, not its value."""
        image = await image_ref[0]
        return raise_failure([await self._detect_batch(DetectionItem(image, lang, options))])[0]

    @serve.batch(max_batch_size=1, batch_wait_timeout_s=0.0)
    async def _detect_batch(self, items: list[DetectionItem]) -> list[list[Block] | Exception]:
        model_id, backend = await self.model()
        blocks, calls = await self.compute(detect_grouped, backend, items)
        self.record(model_id, calls=calls, items=len(items))
        return blocks
