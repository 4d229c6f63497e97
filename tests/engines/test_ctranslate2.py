"""The CTranslate2 engine of the seq2seq translation family, against `transformers` on tiny models.

No Ray: backends are loaded here. The four families are built a little larger than the server
tests' (64 wide, 2 layers, weights drawn wider), so that their greedy output depends on the input
text and on the target language: the default tiny models answer every input with the same text,
which would let an engine that ignores its input pass.
"""

import json
import logging
import os

import numpy as np
import pytest

from core.settings import WeightSources
from models_registry import Registry
from models_registry.backends.base import Runtime
from models_registry.backends.huggingface import Seq2SeqTranslation
from tests.support.tiny_hf import (
    CORPUS,
    M2M100,
    MARIAN,
    MBART50,
    NLLB,
    build_m2m100,
    build_marian,
    build_mbart50,
    build_nllb,
    tiny_entries,
)

BUILDERS = {MARIAN: build_marian, M2M100: build_m2m100, NLLB: build_nllb, MBART50: build_mbart50}
TARGETS = {MARIAN: ["en"], M2M100: ["en", "es"], NLLB: ["en", "es"], MBART50: ["en", "es"]}
VARIED = {"d_model": 64, "layers": 2, "init_std": 0.5}
TEXTS = sorted(set(CORPUS)) + ["x", "a much longer sentence than the others, to pad the batch"]
GREEDY = {"max_new_tokens": 12, "num_beams": 1}
HUGGINGFACE = "models_registry.backends.huggingface"


def _registry(models, converted) -> Registry:
    entries = models.parent / "entries"
    entries.mkdir(exist_ok=True)
    (entries / "tiny.yaml").write_text(tiny_entries())
    return Registry.load([entries], WeightSources(models_dirs=[models], converted_dir=converted))


def load(registry: Registry, model_id: str, **settings) -> Seq2SeqTranslation:
    """The model with its entry's settings changed (the tiny entries ask for float32)."""
    entry = registry.get(model_id)
    entry = entry.model_copy(update={"settings": {**entry.settings, **settings}})
    return Seq2SeqTranslation(entry, Runtime(weights=registry.weights))


def translate(backend: Seq2SeqTranslation, dst: str, options=GREEDY, texts=TEXTS) -> list[str]:
    return backend.translate(texts, backend.entry.code_for("ja"), backend.entry.code_for(dst), options)


@pytest.fixture(scope="module")
def registry(tmp_path_factory) -> Registry:
    root = tmp_path_factory.mktemp("ct2")
    for model_id, build in BUILDERS.items():
        build(root / "models" / model_id, **VARIED)
    return _registry(root / "models", root / "converted")


@pytest.fixture
def marian(tmp_path) -> Registry:
    """A registry of its own with a default tiny Marian, for the tests that change its files."""
    build_marian(tmp_path / "models" / MARIAN)
    return _registry(tmp_path / "models", tmp_path / "converted")


def conversions(registry: Registry, model_id: str) -> list:
    folder = registry.weights.converted_dir / "ctranslate2" / model_id.replace("/", "--")
    return sorted(path for path in folder.iterdir() if path.is_dir()) if folder.is_dir() else []


@pytest.mark.parametrize("model_id", list(BUILDERS))
def test_float32_translates_exactly_as_transformers(registry, model_id):
    """Greedy search, float32: the same text for every input, token for token (no tolerance),
    with the target language forced (M2M100, NLLB, mBART-50) for each target."""
    reference = load(registry, model_id, engine="transformers")
    converted = load(registry, model_id)
    assert reference.engine == "transformers float32 on cpu" and reference.translator is None
    assert converted.engine == "ctranslate2 float32 on cpu" and converted.model is None
    assert reference.computes_on_torch and not converted.computes_on_torch
    by_target = {}
    for dst in TARGETS[model_id]:
        by_target[dst] = translate(converted, dst)
        assert by_target[dst] == translate(reference, dst)
        assert len(set(by_target[dst])) >= 4, "the output should depend on the input"
    if len(by_target) > 1:
        assert by_target["en"] != by_target["es"], "the output should depend on the forced target language"


@pytest.mark.parametrize("model_id", [MARIAN, MBART50])
def test_generation_options_reach_ctranslate2(registry, model_id):
    """num_beams is beam_size (4 beams: the same texts as transformers' beam search on these
    models; it differs from greedy); max_new_tokens bounds the output as in transformers, where
    models with a forced </s> (Marian, mBART-50) spend the last token on it."""
    reference, converted = load(registry, model_id, engine="transformers"), load(registry, model_id)
    beams = {"max_new_tokens": 12, "num_beams": 4}
    assert translate(converted, "en", beams) == translate(reference, "en", beams) != translate(converted, "en")
    short = {"max_new_tokens": 3, "num_beams": 1}
    assert translate(converted, "en", short) == translate(reference, "en", short)
    assert max(map(len, translate(converted, "en", short))) < max(map(len, translate(converted, "en")))


@pytest.mark.parametrize("model_id", list(BUILDERS))
def test_int8_on_cpu_by_default_scores_like_float32(registry, model_id):
    """The default compute type on a CPU is int8. int8 rounds weights and activations: on random
    weights greedy choices between close tokens flip and the texts part after them, so this does
    not compare texts; it checks that int8 gives float32's translations nearly the same
    log-probabilities: within 0.75 nats per token on average (measured: 0.2 to 0.45)."""
    exact, fast = load(registry, model_id), load(registry, model_id, compute_type="auto")
    assert fast.engine == "ctranslate2 int8_float32 on cpu"
    assert len(translate(fast, "en")) == len(TEXTS)
    source = [exact.tokenizer.convert_ids_to_tokens(ids) for ids in exact._tokenize(TEXTS, "ja", "en").input_ids]
    prefix = exact.target_token(exact.entry.code_for("en"))
    results = exact.translator.translate_batch(source, target_prefix=prefix and [[prefix]] * len(source),
                                               beam_size=1, max_decoding_length=12)
    hypotheses = [result.hypotheses[0] for result in results]
    scores = [[np.array(s.log_probs) for s in t.translator.score_batch(source, hypotheses)] for t in (exact, fast)]
    difference = np.mean(np.abs(np.concatenate(scores[0]) - np.concatenate(scores[1])))
    assert 0 < difference < 0.75


def test_a_conversion_is_made_once_and_reused(marian, caplog):
    caplog.set_level(logging.INFO, logger="models_registry")
    first = load(marian, MARIAN)
    assert first.engine.startswith("ctranslate2")
    assert sum("converting" in r.getMessage() for r in caplog.records) == 1
    [folder] = conversions(marian, MARIAN)
    before = os.stat(folder / "model.bin")
    caplog.clear()
    second = load(marian, MARIAN)
    assert not any("converting" in r.getMessage() for r in caplog.records)
    assert conversions(marian, MARIAN) == [folder]
    after = os.stat(folder / "model.bin")
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert translate(second, "en") == translate(first, "en")


def test_new_weights_are_converted_again_and_the_old_conversion_removed(marian):
    old = translate(load(marian, MARIAN), "en")
    [old_folder] = conversions(marian, MARIAN)
    build_marian(marian.weights.models_dirs[0] / MARIAN, seed=7, d_model=32)
    converted, reference = load(marian, MARIAN), load(marian, MARIAN, engine="transformers")
    [new_folder] = conversions(marian, MARIAN)
    assert new_folder != old_folder and not old_folder.exists()
    assert translate(converted, "en") == translate(reference, "en") != old


def test_a_damaged_conversion_is_rebuilt_with_a_warning_and_never_served(marian, caplog):
    expected = translate(load(marian, MARIAN), "en")
    [folder] = conversions(marian, MARIAN)
    weights = folder / "model.bin"
    size = weights.stat().st_size
    weights.write_bytes(weights.read_bytes()[: size // 2])
    caplog.set_level(logging.INFO, logger="models_registry")
    rebuilt = load(marian, MARIAN)
    damaged = [r for r in caplog.records if r.levelno == logging.WARNING and "damaged" in r.getMessage()]
    assert len(damaged) == 1 and "model.bin" in damaged[0].getMessage()
    assert rebuilt.engine.startswith("ctranslate2")  # served from the rebuilt folder, not transformers
    assert weights.stat().st_size == size and translate(rebuilt, "en") == expected
    assert not any("runs on transformers" in r.getMessage() for r in caplog.records)


def test_a_model_ctranslate2_cannot_convert_runs_on_transformers_with_a_warning(marian, caplog):
    config_file = marian.weights.models_dirs[0] / MARIAN / "config.json"
    config = json.loads(config_file.read_text())
    # An activation transformers has and CTranslate2 has not.
    config_file.write_text(json.dumps({**config, "activation_function": "tanh"}))
    caplog.set_level(logging.WARNING, logger="models_registry")
    backend = load(marian, MARIAN)
    assert backend.engine == "transformers float32 on cpu" and backend.translator is None
    [warning] = [r.getMessage() for r in caplog.records if r.name == HUGGINGFACE and r.levelno == logging.WARNING]
    assert MARIAN in warning and "runs on transformers" in warning and "tanh" in warning
    assert len(translate(backend, "en")) == len(TEXTS)
    assert conversions(marian, MARIAN) == []  # nothing half-built left behind


def test_without_a_conversion_folder_or_when_asked_transformers_runs(marian, caplog):
    caplog.set_level(logging.WARNING, logger="models_registry")
    asked = load(marian, MARIAN, engine="transformers")
    assert asked.engine == "transformers float32 on cpu"
    assert not [r for r in caplog.records if r.name == HUGGINGFACE]  # asked for: nothing to warn about
    assert conversions(marian, MARIAN) == []
    backend = load(_registry(marian.weights.models_dirs[0], converted=None), MARIAN)
    assert backend.engine == "transformers float32 on cpu"
    assert any("no conversion cache folder" in r.getMessage() for r in caplog.records)
