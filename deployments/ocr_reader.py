"""OCRReader: reads crops; crops of concurrent requests are batched per model, language and options."""

import asyncio
from typing import Any

import numpy as np
from ray import serve

from inference.grouping import raise_failure
from inference.reading import OCRItem, read_grouped

from .model_host import BatchedModelDeployment


@serve.deployment
class OCRReader(BatchedModelDeployment):
    kind = "ocr"
    batch_method_name = "_read_batch"

    async def read(self, crops: list[np.ndarray], lang: str, options: dict[str, Any]) -> list[str]:
        """Texts of one image's crops; they join the batch queue one by one, beside other requests' crops."""
        return raise_failure(await asyncio.gather(*(self._read_batch(OCRItem(crop, lang, options)) for crop in crops)))

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.02)
    async def _read_batch(self, items: list[OCRItem]) -> list[str | Exception]:
        # Serve splits batches by multiplexed model id, so one batch is one model.
        model_id, backend = await self.model()
        texts, calls = await self.compute(read_grouped, backend, items)
        self.record(model_id, calls=calls, items=len(items))
        return texts
