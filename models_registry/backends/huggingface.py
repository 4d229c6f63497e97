"""Hugging Face `transformers`: seq2seq translation and VisionEncoderDecoder OCR.

Translation covers Marian (`opus-mt-*`), M2M100, NLLB-200 and mBART-50: they differ only in how
the languages reach the model, which each entry declares in `settings` (see `LanguageTokens`).
OCR covers manga-ocr and TrOCR style checkpoints (image processor + tokenizer + generate).

Weights are looked for in the configured models folders (`<folder>/<org>/<name>`), then in the
Hugging Face cache, then fetched from the hub only when the config allows it.
"""

import threading
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict

from core.errors import BadRequest, ModelLoadError
from core.settings import WeightSources

from ..schema import ModelEntry
from .base import Family, OCRBackend, Probe, Runtime, TranslationBackend, probe_distribution

GENERATION_OPTIONS = ("max_new_tokens", "num_beams")
"""Entry options passed to `generate` when the entry declares them."""


def _probe() -> Probe:
    for distribution in ("torch", "transformers"):
        probe = probe_distribution(distribution, "pip install torch transformers sentencepiece")
        if not probe.ok:
            return probe
    return probe


def _from_hf_cache(repo: str) -> Path | None:
    from huggingface_hub import snapshot_download

    try:
        folder = Path(snapshot_download(repo, local_files_only=True))
    except Exception:  # not cached (LocalEntryNotFoundError), or a cache it cannot read
        return None
    return folder if (folder / "config.json").is_file() else None


def find_weights(entry: ModelEntry, weights: WeightSources) -> str:
    """The folder holding the model, or its repository id when the hub may be used.

    Raises ModelLoadError naming every place searched and how to add the model.
    """
    from huggingface_hub import constants

    repo = entry.weights.repo
    if not repo:
        raise ModelLoadError(f"Model entry {entry.id!r} names no weights.repo (the Hugging Face repository id).")
    searched = []
    for folder in weights.models_dirs:
        candidate = Path(folder) / repo
        if (candidate / "config.json").is_file():
            return str(candidate)
        searched.append(str(candidate))
    cached = _from_hf_cache(repo)
    if cached is not None:
        return str(cached)
    searched.append(f"the Hugging Face cache {constants.HF_HUB_CACHE}")
    if weights.hub_downloads and not constants.HF_HUB_OFFLINE:
        return repo
    where = Path(weights.models_dirs[0]) / repo if weights.models_dirs else f"<models folder>/{repo}"
    raise ModelLoadError(
        f"weights of {repo!r} not found (searched {', '.join(searched)}); put its files in {where} "
        f"(`hf download {repo} --local-dir {where}` on a machine online) or set args.weights.hub_downloads")


class _HuggingFaceModel:
    """Shared by both kinds: find the weights, load tokenizer and model on the replica's device."""

    model_class: str
    """The `transformers` class that loads the checkpoint."""

    def __init__(self, entry: ModelEntry, runtime: Runtime):
        super().__init__(entry, runtime)
        import torch
        import transformers

        self._torch = torch
        self._dtype = torch.float16 if runtime.device == "cuda" and runtime.half_precision else torch.float32
        # Tokenizers keep per-call state (src_lang); one batch at a time per loaded model.
        self._lock = threading.Lock()
        self.source = find_weights(entry, runtime.weights)
        self.tokenizer = transformers.AutoTokenizer.from_pretrained(self.source)
        model = getattr(transformers, self.model_class).from_pretrained(self.source, dtype=self._dtype)
        self.model = model.to(device=runtime.device, dtype=self._dtype).eval()

    @classmethod
    def missing_weights(cls, entry: ModelEntry, weights: WeightSources) -> str | None:
        try:
            find_weights(entry, weights)
        except ModelLoadError as exc:
            return exc.message
        return None

    def _generate(self, inputs: dict[str, Any], options: dict[str, Any], **extra: Any):
        generation = {name: options[name] for name in GENERATION_OPTIONS if name in options}
        with self._torch.inference_mode():
            return self.model.generate(**inputs, **generation, **extra)

    def close(self) -> None:
        self.model = None
        if self.runtime.device == "cuda":
            self._torch.cuda.empty_cache()


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LanguageTokens(_Strict):
    """How a seq2seq family is told the languages (codes come from the entry's code map).

    Marian ja->en: nothing (the pair is the model). Multi-target Marian: `text_prefix` with
    token ">>{code}<<". M2M100: `tokenizer_src_lang` + `forced_bos` with "__{code}__". NLLB-200
    and mBART-50: `tokenizer_src_lang` + `forced_bos` with "{code}" (`jpn_Jpan`, `ja_XX`).
    """

    source: Literal["none", "tokenizer_src_lang"] = "none"
    target: Literal["none", "forced_bos", "text_prefix"] = "none"
    target_token: str = "{code}"


class Seq2SeqTranslation(_HuggingFaceModel, TranslationBackend):
    Settings = LanguageTokens
    model_class = "AutoModelForSeq2SeqLM"

    def target_token_id(self, dst: str) -> int:
        token = self.settings.target_token.format(code=dst)
        token_id = self.tokenizer.convert_tokens_to_ids(token)
        if token_id is None or token_id == self.tokenizer.unk_token_id:
            raise BadRequest(f"Model {self.entry.id!r} has no token {token!r} for the target language.")
        return token_id

    def encode(self, texts: list[str], src: str, dst: str) -> tuple[dict[str, Any], dict[str, Any]]:
        """Tokenized inputs and the extra `generate` arguments that carry the languages."""
        settings, extra = self.settings, {}
        if settings.source == "tokenizer_src_lang":
            self.tokenizer.src_lang = src
        if settings.target == "text_prefix":
            texts = [f"{settings.target_token.format(code=dst)} {text}" for text in texts]
        elif settings.target == "forced_bos":
            extra["forced_bos_token_id"] = self.target_token_id(dst)
        inputs = self.tokenizer(texts, return_tensors="pt", padding=True, truncation=True)
        return inputs.to(self.runtime.device), extra

    def translate(self, texts: list[str], src: str, dst: str, options: dict[str, Any]) -> list[str]:
        with self._lock:
            inputs, extra = self.encode(texts, src, dst)
            output = self._generate(inputs, options, **extra)
        return [text.strip() for text in self.tokenizer.batch_decode(output, skip_special_tokens=True)]


class VisionOCRSettings(_Strict):
    grayscale: bool = False
    """Read crops as grayscale (manga-ocr was trained so)."""
    strip_spaces: bool = False
    """Drop the spaces a character-level tokenizer puts between characters (Japanese, Chinese)."""


class VisionEncoderDecoderOCR(_HuggingFaceModel, OCRBackend):
    Settings = VisionOCRSettings
    model_class = "VisionEncoderDecoderModel"

    def __init__(self, entry: ModelEntry, runtime: Runtime):
        super().__init__(entry, runtime)
        from transformers import AutoImageProcessor

        self.processor = AutoImageProcessor.from_pretrained(self.source)

    def read(self, crops: list[np.ndarray], lang: str, options: dict[str, Any]) -> list[str]:
        from PIL import Image

        images = [Image.fromarray(crop) for crop in crops]
        if self.settings.grayscale:
            images = [image.convert("L").convert("RGB") for image in images]
        pixels = self.processor(images=images, return_tensors="pt").pixel_values
        with self._lock:
            output = self._generate({"pixel_values": pixels.to(self.runtime.device, self._dtype)}, options)
        texts = self.tokenizer.batch_decode(output, skip_special_tokens=True)
        if self.settings.strip_spaces:
            return ["".join(text.split()) for text in texts]
        return [text.strip() for text in texts]


FAMILY = Family(
    name="huggingface",
    description="Hugging Face transformers: seq2seq translation (Marian, M2M100, NLLB, mBART-50) "
                "and VisionEncoderDecoder OCR (manga-ocr, TrOCR).",
    homepage="https://huggingface.co/docs/transformers",
    install_hint="pip install torch transformers sentencepiece",
    probe=_probe,
    backends={"tsl": Seq2SeqTranslation, "ocr": VisionEncoderDecoderOCR},
)
