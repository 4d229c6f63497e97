"""The Hugging Face backends on tiny local models: each family's language conventions, OCR tidying."""

import numpy as np
import pytest

from core.errors import BadRequest
from core.settings import WeightSources
from models_registry import Registry
from tests.support.tiny_hf import M2M100, MARIAN, MBART50, NLLB, OCR_JA, write_tiny_models


@pytest.fixture(scope="module")
def registry(tmp_path_factory) -> Registry:
    models, entries = tmp_path_factory.mktemp("models"), tmp_path_factory.mktemp("entries")
    write_tiny_models(models, entries)
    return Registry.load([entries], WeightSources(models_dirs=[models]))


def _ids(backend, *tokens: str) -> list[int]:
    return [backend.tokenizer.convert_tokens_to_ids(token) for token in tokens]


@pytest.mark.parametrize("model_id,src_token,dst_token", [
    (M2M100, "__ja__", "__en__"),
    (NLLB, "jpn_Jpan", "eng_Latn"),
    (MBART50, "ja_XX", "en_XX"),
])
def test_many_to_many_models_get_source_token_and_forced_target(registry, model_id, src_token, dst_token):
    backend = registry.load_backend(model_id, "tsl")
    entry = backend.entry
    inputs, extra = backend.encode(["a test sentence"], entry.code_for("ja"), entry.code_for("en"))
    source_id, target_id = _ids(backend, src_token, dst_token)
    assert inputs["input_ids"][0][0].item() == source_id
    assert extra == {"forced_bos_token_id": target_id}
    output = backend.model.generate(**inputs, **extra, max_new_tokens=3)
    assert target_id in output[0][:2].tolist()  # generation starts in the target language


def test_marian_pair_needs_no_language_tokens(registry):
    backend = registry.load_backend(MARIAN, "tsl")
    inputs, extra = backend.encode(["a test sentence"], "ja", "en")
    assert extra == {}
    assert inputs["input_ids"].shape[0] == 1


def test_target_as_text_prefix_and_unknown_target_token(registry):
    backend = registry.load_backend(M2M100, "tsl")
    backend.settings = backend.settings.model_copy(update={"source": "none", "target": "text_prefix"})
    inputs, extra = backend.encode(["a test sentence"], "ja", "en")
    assert extra == {} and _ids(backend, "__en__")[0] in inputs["input_ids"][0].tolist()
    backend.settings = backend.settings.model_copy(update={"target": "forced_bos", "target_token": "<{code}>"})
    with pytest.raises(BadRequest, match="no token"):
        backend.encode(["x"], "ja", "en")


def test_batches_translate_one_output_per_text(registry):
    backend = registry.load_backend(MARIAN, "tsl")
    options = {"max_new_tokens": 4, "num_beams": 1}
    texts = ["short", "a much longer sentence than the first one", "mid length"]
    assert len(backend.translate(texts, "ja", "en", options)) == 3


def test_ocr_reads_each_crop_and_strips_spaces_for_japanese(registry):
    backend = registry.load_backend(OCR_JA, "ocr")
    assert backend.settings.grayscale and backend.settings.strip_spaces
    crops = [np.full((40, 120, 3), 255, np.uint8), np.zeros((60, 30, 3), np.uint8)]
    texts = backend.read(crops, "ja", {"max_new_tokens": 6, "num_beams": 1})
    assert len(texts) == 2 and all(text == "".join(text.split()) for text in texts)


def test_large_batches_run_in_passes_of_bounded_size_with_the_same_results(tmp_path_factory):
    models, entries = tmp_path_factory.mktemp("models"), tmp_path_factory.mktemp("entries")
    write_tiny_models(models, entries)
    texts = [f"sentence number {n} of the batch" for n in range(7)]
    options = {"max_new_tokens": 4, "num_beams": 1}
    whole = Registry.load([entries], WeightSources(models_dirs=[models])).load_backend(MARIAN, "tsl")
    passes = Registry.load([entries], WeightSources(models_dirs=[models]),
                           {MARIAN: {"max_pass_size": 3}}).load_backend(MARIAN, "tsl")
    sizes = []
    generate = passes._generate
    passes._generate = lambda inputs, *args, **kwargs: sizes.append(len(inputs["input_ids"])) or generate(
        inputs, *args, **kwargs)
    assert passes.translate(texts, "ja", "en", options) == whole.translate(texts, "ja", "en", options)
    assert sizes == [3, 3, 1]
