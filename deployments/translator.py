"""Translator: translates texts; texts of concurrent requests are batched per model, languages and options."""

import asyncio
from typing import Any

from ray import serve

from core.glossary import NO_TERMS, Glossary
from inference.grouping import raise_failure
from inference.translation import TranslationItem, translate_grouped, translate_texts

from .model_host import BatchedModelDeployment


@serve.deployment
class Translator(BatchedModelDeployment):
    kind = "tsl"
    batch_method_name = "_translate_batch"

    async def translate(self, texts: list[str], src: str, dst: str, options: dict[str, Any],
                        glossary: Glossary = NO_TERMS) -> list[str]:
        """Translations of one request's texts (an image's blocks, in reading order); they are batched
        with other requests' texts, except for a model that translates a page as a whole (a language
        model behind a chat server): it gets them in one call of their own, beside the batches, and
        bounds its calls in flight itself (the server batches on its side)."""
        model_id, backend = await self.model()
        if backend.translates_pages:
            translated = await asyncio.to_thread(translate_texts, backend, texts, src, dst, options, glossary)
            self.record(model_id, calls=1, items=len(texts))
            return translated
        return raise_failure(await asyncio.gather(*(
            self._translate_batch(TranslationItem(text, src, dst, options, glossary)) for text in texts)))

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.02)
    async def _translate_batch(self, items: list[TranslationItem]) -> list[str | Exception]:
        model_id, backend = await self.model()
        texts, calls = await self.compute(translate_grouped, backend, items)
        self.record(model_id, calls=calls, items=len(items))
        return texts
