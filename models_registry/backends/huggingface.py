"""Hugging Face `transformers`: seq2seq translation and VisionEncoderDecoder OCR.

Translation covers Marian (`opus-mt-*`), M2M100, NLLB-200 and mBART-50: they differ only in how
the languages reach the model, which each entry declares in `settings` (see `LanguageTokens`).
OCR covers manga-ocr and TrOCR style checkpoints (image processor + tokenizer + generate).

Translation runs on CTranslate2 by default (`engine` in the entry's settings): the checkpoint is
converted once into the conversion cache (`models_registry/conversion.py`), stored in float32 so
one conversion serves every device, and loaded as int8 on a CPU, float16 on a GPU with half
precision. A model that cannot be converted keeps the `transformers` engine, with a warning.

Weights are looked for in the configured models folders (`<folder>/<org>/<name>`), then in the
Hugging Face cache (the snapshot of the entry's `weights.revision` where it pins one). A model
replica never downloads: where the config allows it, the ingress has missing weights fetched into
the Hugging Face cache in the background (`hub_downloads.py`) and sends the model's requests only
once its snapshot there is complete.
"""

import json
import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, PositiveInt

from core.errors import BadRequest, ModelLoadError
from core.options import OptionSpec
from core.settings import WeightSources

from .. import conversion
from ..hub_downloads import cached_snapshot
from ..schema import ModelEntry
from .base import Family, OCRBackend, Probe, Runtime, TranslationBackend, probe_distribution

log = logging.getLogger(__name__)

GENERATION_OPTIONS = {"max_new_tokens": "max_decoding_length", "num_beams": "beam_size"}
"""Options passed to `generate`, and their CTranslate2 names."""


def generation_options(longest: int, beams: int, output: str) -> dict[str, OptionSpec]:
    """The generation options of a kind of model, with its defaults."""
    return {
        "max_new_tokens": OptionSpec(type="int", default=longest, minimum=1, maximum=1024,
                                     description=f"Longest {output}, in tokens."),
        "num_beams": OptionSpec(type="int", default=beams, minimum=1, maximum=16, description=(
            "Beam search width (1 is greedy decoding, the fastest; more is usually better).")),
    }
CONVERTED_PRECISION = "float32"
"""How CTranslate2 conversions are stored: lossless, so each replica picks its compute type at load."""
_OTHER_FRAMEWORKS = (".h5", ".msgpack", ".ot", ".onnx")
"""Weight files of other frameworks in a model folder: not read by the converter, so not checksummed."""


def _probe() -> Probe:
    for distribution in ("torch", "transformers"):
        probe = probe_distribution(distribution, "pip install torch transformers sentencepiece")
        if not probe.ok:
            return probe
    return probe


def hub_allowed(weights: WeightSources) -> bool:
    """Whether missing weights may be fetched from the hub (by `hub_downloads.HubDownloads`, never
    by a model replica): the config allows it and huggingface_hub is not told to stay offline."""
    from huggingface_hub import constants

    return weights.hub_downloads and not constants.HF_HUB_OFFLINE


def may_download(entry: ModelEntry, weights: WeightSources) -> bool:
    """Whether this entry's missing weights may be fetched: downloads are allowed, and the entry pins
    the commit to fetch (`weights.revision`) or the config allows unpinned downloads."""
    return bool(entry.weights.repo) and hub_allowed(weights) and (
        entry.weights.revision is not None or weights.allow_unpinned_downloads)


def find_weights(entry: ModelEntry, weights: WeightSources) -> str:
    """The folder holding the model: a models folder, else a complete snapshot in the Hugging Face cache.

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
    cached = cached_snapshot(repo, entry.weights.revision)
    if cached is not None:
        return str(cached)
    at = f" at revision {entry.weights.revision}" if entry.weights.revision else ""
    searched.append(f"the Hugging Face cache {constants.HF_HUB_CACHE}{at}")
    where = Path(weights.models_dirs[0]) / repo if weights.models_dirs else f"<models folder>/{repo}"
    raise ModelLoadError(
        f"weights of {repo!r} not found (searched {', '.join(searched)}); put its files in {where} "
        f"(`hf download {repo} --local-dir {where}` on a machine online) or set args.weights.hub_downloads")


class _HuggingFaceModel:
    """Shared by both kinds: find the weights, load tokenizer and model on the replica's device."""

    model_class: str
    """The `transformers` class that loads the checkpoint."""
    model = None
    """The `transformers` model, when that engine runs it."""

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
        self._engine = self._load_engine()

    @property
    def engine(self) -> str:
        """"transformers float32 on cpu", "ctranslate2 int8_float32 on cpu", ..."""
        return self._engine

    @property
    def computes_on_torch(self) -> bool:
        return self.model is not None

    def _load_engine(self) -> str:
        import transformers

        model = getattr(transformers, self.model_class).from_pretrained(self.source, dtype=self._dtype)
        self.model = model.to(device=self.runtime.device, dtype=self._dtype).eval()
        return f"transformers {str(self._dtype).removeprefix('torch.')} on {self.runtime.device}"

    @classmethod
    def missing_weights(cls, entry: ModelEntry, weights: WeightSources) -> str | None:
        try:
            find_weights(entry, weights)
        except ModelLoadError as exc:
            if may_download(entry, weights):
                return None
            if entry.weights.repo and hub_allowed(weights):  # downloads are on, but not of unpinned entries
                return (f"{exc.message} (it is on, but downloads only entries that pin weights.revision, the commit "
                        f"to fetch; this one pins none and args.weights.allow_unpinned_downloads is off)")
            return exc.message
        return None

    @classmethod
    def downloadable_from(cls, entry: ModelEntry, weights: WeightSources) -> str | None:
        if not may_download(entry, weights):
            return None
        try:
            find_weights(entry, weights)
        except ModelLoadError:
            return entry.weights.repo
        return None

    def _generate(self, inputs: dict[str, Any], options: dict[str, Any], **extra: Any):
        generation = {name: options[name] for name in GENERATION_OPTIONS}
        with self._torch.inference_mode():
            return self.model.generate(**inputs, **generation, **extra)

    def close(self) -> None:
        self.model = None
        if self.runtime.device == "cuda":
            self._torch.cuda.empty_cache()


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Passes(_Strict):
    max_pass_size: PositiveInt = 32
    """Texts or crops per forward pass: a batch of many requests is run in passes of this size, so
    one pass's memory (beams x tokens x texts) stays bounded."""


def _in_passes(items: list, size: int, run: Callable[[list], list[str]]) -> list[str]:
    return [output for start in range(0, len(items), size) for output in run(items[start:start + size])]


class LanguageTokens(_Passes):
    """How a seq2seq family is told the languages (codes come from the entry's code map).

    Marian ja->en: nothing (the pair is the model). Multi-target Marian: `text_prefix` with
    token ">>{code}<<". M2M100: `tokenizer_src_lang` + `forced_bos` with "__{code}__". NLLB-200
    and mBART-50: `tokenizer_src_lang` + `forced_bos` with "{code}" (`jpn_Jpan`, `ja_XX`).
    """

    source: Literal["none", "tokenizer_src_lang"] = "none"
    target: Literal["none", "forced_bos", "text_prefix"] = "none"
    target_token: str = "{code}"


class Seq2SeqSettings(LanguageTokens):
    engine: Literal["ctranslate2", "transformers"] = "ctranslate2"
    """CTranslate2 (converted once, int8 on a CPU: several times faster) or `transformers` as is.
    A model CTranslate2 cannot convert runs on `transformers`, with a warning in the log."""
    compute_type: Literal["auto", "int8", "float16", "float32"] = "auto"
    """CTranslate2's precision. auto: int8 on a CPU; on a GPU float16 with half precision, else
    float32. float32 translates as `transformers` does, token for token (int8 may round otherwise)."""


def ctranslate2_compute_type(settings: Seq2SeqSettings, runtime: Runtime) -> str:
    if settings.compute_type != "auto":
        return settings.compute_type
    if runtime.device == "cuda":
        return "float16" if runtime.half_precision else "float32"
    return "int8"


class Seq2SeqTranslation(_HuggingFaceModel, TranslationBackend):
    Settings = Seq2SeqSettings
    model_class = "AutoModelForSeq2SeqLM"
    declared_options = generation_options(256, 4, "translation of one sentence")
    translator = None
    """The CTranslate2 translator, when that engine runs the model."""

    def _load_engine(self) -> str:
        if self.settings.engine == "ctranslate2":
            try:
                return self._load_ctranslate2()
            except Exception as exc:
                log.warning("%s runs on transformers, not CTranslate2: %s", self.entry.id, exc)
        return super()._load_engine()

    def _load_ctranslate2(self) -> str:
        root, folder = self.runtime.weights.converted_dir, Path(self.source)
        if root is None:
            raise RuntimeError("no conversion cache folder is configured (weights.converted_dir)")
        import ctranslate2
        from transformers import AutoConfig, GenerationConfig

        def build(target: Path) -> None:
            converter = ctranslate2.converters.TransformersConverter(str(folder), low_cpu_mem_usage=True)
            converter.convert(str(target), quantization=CONVERTED_PRECISION, force=True)

        sources = [path for path in folder.iterdir() if path.is_file() and path.suffix not in _OTHER_FRAMEWORKS]
        converted = conversion.converted(
            root=root, engine="ctranslate2", model_id=self.entry.id, sources=sources,
            parameters={"quantization": CONVERTED_PRECISION, "ctranslate2": ctranslate2.__version__}, build=build)
        translator = ctranslate2.Translator(
            str(converted), device=self.runtime.device, intra_threads=self.runtime.threads, inter_threads=1,
            compute_type=ctranslate2_compute_type(self.settings, self.runtime))
        try:
            self._generation = GenerationConfig.from_pretrained(folder)
        except OSError:  # older checkpoints keep it in config.json
            self._generation = GenerationConfig.from_model_config(AutoConfig.from_pretrained(folder))
        # Output tokens back to the model's ids: a converted vocabulary keeps the ids (rows of the
        # embeddings), and names ids the tokenizer does not (M2M100's padding "madeupword"s).
        vocabulary = converted / "shared_vocabulary.json"
        if not vocabulary.is_file():
            vocabulary = converted / "target_vocabulary.json"
        self._token_ids = {token: i for i, token in enumerate(json.loads(vocabulary.read_text()))}
        self.translator = translator
        return f"ctranslate2 {translator.compute_type} on {self.runtime.device}"

    def target_token(self, dst: str) -> str | None:
        """The token forced first in the output (`forced_bos`), else None."""
        if self.settings.target != "forced_bos":
            return None
        token = self.settings.target_token.format(code=dst)
        token_id = self.tokenizer.convert_tokens_to_ids(token)
        if token_id is None or token_id == self.tokenizer.unk_token_id:
            raise BadRequest(f"Model {self.entry.id!r} has no token {token!r} for the target language.")
        return token

    def _tokenize(self, texts: list[str], src: str, dst: str, **kwargs: Any):
        """The tokenizer's output for the texts with the languages set (source token, text prefix)."""
        settings = self.settings
        if settings.source == "tokenizer_src_lang":
            self.tokenizer.src_lang = src
        if settings.target == "text_prefix":
            texts = [f"{settings.target_token.format(code=dst)} {text}" for text in texts]
        return self.tokenizer(texts, truncation=True, **kwargs)

    def encode(self, texts: list[str], src: str, dst: str) -> tuple[dict[str, Any], dict[str, Any]]:
        """Tokenized inputs and the extra `generate` arguments that carry the languages."""
        target = self.target_token(dst)
        extra = {} if target is None else {"forced_bos_token_id": self.tokenizer.convert_tokens_to_ids(target)}
        inputs = self._tokenize(texts, src, dst, return_tensors="pt", padding=True)
        return inputs.to(self.runtime.device), extra

    def _ctranslate2_options(self, options: dict[str, Any]) -> dict[str, Any]:
        """The generation options as CTranslate2's."""
        chosen = {name: options[name] for name in GENERATION_OPTIONS}
        if self._generation.forced_eos_token_id is not None:  # transformers spends the last step on </s>
            chosen["max_new_tokens"] = max(1, chosen["max_new_tokens"] - 1)
        return {GENERATION_OPTIONS[name]: value for name, value in chosen.items()}

    def _run_ctranslate2(self, texts: list[str], src: str, dst: str, options: dict[str, Any]) -> list[list[int]]:
        target = self.target_token(dst)
        tokens = [self.tokenizer.convert_ids_to_tokens(ids) for ids in self._tokenize(texts, src, dst).input_ids]
        results = self.translator.translate_batch(
            tokens, target_prefix=None if target is None else [[target]] * len(tokens),
            max_batch_size=len(tokens), **self._ctranslate2_options(options))
        skip = 0 if target is None else 1  # the hypotheses start with the target prefix
        return [[self._token_ids[token] for token in result.hypotheses[0][skip:]] for result in results]

    def translate(self, texts: list[str], src: str, dst: str, options: dict[str, Any]) -> list[str]:
        def one_pass(chunk: list[str]) -> list[str]:
            with self._lock:
                if self.translator is not None:
                    output = self._run_ctranslate2(chunk, src, dst, options)
                else:
                    inputs, extra = self.encode(chunk, src, dst)
                    output = self._generate(inputs, options, **extra)
            return [text.strip() for text in self.tokenizer.batch_decode(output, skip_special_tokens=True)]

        return _in_passes(texts, self.settings.max_pass_size, one_pass)

    def close(self) -> None:
        self.translator = None
        super().close()


class VisionOCRSettings(_Passes):
    grayscale: bool = False
    """Read crops as grayscale (manga-ocr was trained so)."""
    strip_spaces: bool = False
    """Drop the spaces a character-level tokenizer puts between characters (Japanese, Chinese)."""


class VisionEncoderDecoderOCR(_HuggingFaceModel, OCRBackend):
    Settings = VisionOCRSettings
    model_class = "VisionEncoderDecoderModel"
    declared_options = generation_options(300, 1, "text read from one crop")

    def __init__(self, entry: ModelEntry, runtime: Runtime):
        super().__init__(entry, runtime)
        from transformers import AutoImageProcessor

        self.processor = AutoImageProcessor.from_pretrained(self.source)

    def read(self, crops: list[np.ndarray], lang: str, options: dict[str, Any]) -> list[str]:
        return _in_passes(crops, self.settings.max_pass_size, lambda chunk: self._read_pass(chunk, options))

    def _read_pass(self, crops: list[np.ndarray], options: dict[str, Any]) -> list[str]:
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
