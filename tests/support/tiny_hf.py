"""Tiny randomly initialised Hugging Face models with real tokenizers, built locally in seconds.

Nothing comes from the hub: sentencepiece / BPE / WordPiece vocabularies are made here from a
small corpus, and each model is saved with `save_pretrained`, so the server loads it through the
same `Auto*.from_pretrained` code as a real checkpoint. Used by the tests and by `bench/`.
"""

import io
import json
from collections.abc import Iterable
from pathlib import Path

import torch

CORPUS = [
    "the quick brown fox jumps over the lazy dog", "hello world, this is a test", "a test sentence",
    "another longer test sentence here", "reading text in images and translating it",
    "猫が好きです", "これはテストです", "日本語の文章を読む", "こんにちは世界", "吾輩は猫である",
] * 4
_SPECIAL = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3}

# Model ids of `write_tiny_models`; each is also its folder under the models folder.
MARIAN, MARIAN_B = "tiny/marian-ja-en", "tiny/marian-ja-en-b"
M2M100, NLLB, MBART50 = "tiny/m2m100", "tiny/nllb", "tiny/mbart50"
OCR_JA = "tiny/ocr-ja"
REMOVABLE = "tiny/removable"
MISSING = "tiny/missing"
"""Declared, but never built: its weights are missing."""
BROKEN = "tiny/broken"
"""Its folder is complete but the weights file is cut short, as after an interrupted copy."""


def sentencepiece_model(sentences: Iterable[str] = CORPUS, vocab_size: int = 80) -> bytes:
    """A unigram sentencepiece model of the sentences, with up to `vocab_size` pieces."""
    import sentencepiece

    model = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(sentences), model_writer=model, vocab_size=vocab_size, model_type="unigram",
        character_coverage=1.0, hard_vocab_limit=False, minloglevel=2)
    return model.getvalue()


def _spm_pieces(spm_model: bytes) -> list[tuple[str, float]]:
    """The sentencepiece pieces with their scores, in sentencepiece's order (<unk>, <s>, </s>, ...)."""
    import sentencepiece

    processor = sentencepiece.SentencePieceProcessor(model_proto=spm_model)
    return [(processor.id_to_piece(i), processor.get_score(i)) for i in range(processor.get_piece_size())]


def _scored_pieces(spm_model: bytes) -> list[tuple[str, float]]:
    """Special tokens first, then the sentencepiece pieces with their scores."""
    pieces = _spm_pieces(spm_model)
    return [(token, 0.0) for token in _SPECIAL] + [(piece, score) for piece, score in pieces if piece not in _SPECIAL]


def _pieces(spm_model: bytes) -> dict[str, int]:
    """The vocab.json mapping of Marian and M2M100 tokenizers."""
    return {piece: i for i, (piece, _) in enumerate(_scored_pieces(spm_model))}


def _vocab_size(tokenizer) -> int:
    """Every id the tokenizer can emit: M2M100's language ids lie past its vocab.json."""
    ids = [*tokenizer.get_vocab().values(), *getattr(tokenizer, "lang_token_to_id", {}).values()]
    return max(ids) + 1 + getattr(tokenizer, "num_madeup_words", 0)


def _seq2seq_config(config_class, tokenizer, d_model: int = 16, layers: int = 1, **extra):
    """Tiny defaults; `extra` adds to them or replaces them (heads, ffn sizes, ...)."""
    return config_class(**{
        "vocab_size": _vocab_size(tokenizer), "d_model": d_model, "encoder_layers": layers, "decoder_layers": layers,
        "encoder_attention_heads": 2, "decoder_attention_heads": 2, "encoder_ffn_dim": 2 * d_model,
        "decoder_ffn_dim": 2 * d_model, "max_position_embeddings": 128, "pad_token_id": tokenizer.pad_token_id,
        "eos_token_id": tokenizer.eos_token_id, **extra})


def _save(folder: Path, seed: int, build_model, *savables) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    model = build_model()
    for item in (model, *savables):
        item.save_pretrained(folder)
    return folder


def build_marian(folder: Path, seed: int = 0, d_model: int = 16, layers: int = 1, spm_model: bytes | None = None,
                 **overrides) -> Path:
    """Marian (opus-mt style): separate source/target sentencepiece models plus vocab.json.

    Tiny by default; `bench/` asks for bigger ones (and a bigger `spm_model` vocabulary), so the
    model's work shows. Every builder passes `overrides` (`d_model`, `layers`, `init_std`, heads,
    ...) on to the model's configuration."""
    from transformers import MarianConfig, MarianMTModel, MarianTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    spm_model = spm_model or sentencepiece_model()
    for name in ("source.spm", "target.spm"):
        (folder / name).write_bytes(spm_model)
    # As in opus-mt's vocab.json: </s> first, <pad> last (the id CTranslate2's converter drops).
    tokens = ["</s>", "<unk>", *(piece for piece in _pieces(spm_model) if piece not in _SPECIAL), "<pad>"]
    (folder / "vocab.json").write_text(json.dumps({token: i for i, token in enumerate(tokens)}))
    tokenizer = MarianTokenizer(str(folder / "source.spm"), str(folder / "target.spm"), str(folder / "vocab.json"))
    config = _seq2seq_config(MarianConfig, tokenizer, d_model, layers, decoder_start_token_id=tokenizer.pad_token_id,
                             **overrides)
    return _save(folder, seed, lambda: MarianMTModel(config), tokenizer)


def build_m2m100(folder: Path, seed: int = 0, **overrides) -> Path:
    """M2M100: sentencepiece + vocab.json; its `__xx__` language tokens are special, as in the real one."""
    from transformers import M2M100Config, M2M100ForConditionalGeneration, M2M100Tokenizer

    folder.mkdir(parents=True, exist_ok=True)
    spm_model = sentencepiece_model()
    (folder / "sentencepiece.bpe.model").write_bytes(spm_model)
    (folder / "vocab.json").write_text(json.dumps(_pieces(spm_model)))
    files = (str(folder / "vocab.json"), str(folder / "sentencepiece.bpe.model"))
    languages = list(M2M100Tokenizer(*files).lang_token_to_id)
    tokenizer = M2M100Tokenizer(*files, additional_special_tokens=languages)
    config = _seq2seq_config(M2M100Config, tokenizer, decoder_start_token_id=tokenizer.eos_token_id, **overrides)
    return _save(folder, seed, lambda: M2M100ForConditionalGeneration(config), tokenizer)


def _characters() -> list[str]:
    """Single-character tokens: the corpus, ASCII letters and a block of kana, so that random
    models emit mostly text rather than the ~200 NLLB language codes."""
    found = {char for line in CORPUS for char in line.replace(" ", "\u2581")} | {"\u2581"}
    found |= {chr(c) for c in range(ord("a"), ord("z") + 1)} | {chr(c) for c in range(0x3041, 0x3097)}
    return sorted(found)


def build_nllb(folder: Path, seed: int = 0, **overrides) -> Path:
    """NLLB-200: an M2M100 model with NllbTokenizer (a BPE vocabulary; `jpn_Jpan`-style codes)."""
    from transformers import M2M100Config, M2M100ForConditionalGeneration, NllbTokenizer

    vocab = dict(_SPECIAL)
    for char in _characters():
        vocab.setdefault(char, len(vocab))
    tokenizer = NllbTokenizer(vocab=vocab, merges=[])
    config = _seq2seq_config(M2M100Config, tokenizer, decoder_start_token_id=tokenizer.eos_token_id, **overrides)
    return _save(folder, seed, lambda: M2M100ForConditionalGeneration(config), tokenizer)


def build_mbart50(folder: Path, seed: int = 0, **overrides) -> Path:
    """mBART-50: MBart50Tokenizer (a unigram vocabulary; `ja_XX`-style codes)."""
    from transformers import MBart50Tokenizer, MBartConfig, MBartForConditionalGeneration

    # The tokenizer takes sentencepiece's order and puts the specials in fairseq's (<s>, <pad>, </s>, <unk>);
    # bos_token as in mbart-large-50's special_tokens_map.json.
    tokenizer = MBart50Tokenizer(vocab=_spm_pieces(sentencepiece_model()), bos_token="<s>")
    # normalize_before and tokenizer_class: as in mbart-large-50's config.json (CTranslate2's converter reads them).
    config = _seq2seq_config(MBartConfig, tokenizer, decoder_start_token_id=tokenizer.eos_token_id,
                             normalize_before=True, tokenizer_class="MBart50Tokenizer", **overrides)
    return _save(folder, seed, lambda: MBartForConditionalGeneration(config), tokenizer)


def build_vision_ocr(folder: Path, seed: int = 0) -> Path:
    """VisionEncoderDecoder (manga-ocr / TrOCR style): ViT encoder, BERT decoder, WordPiece characters."""
    from transformers import (
        BertConfig,
        BertLMHeadModel,
        BertTokenizer,
        VisionEncoderDecoderModel,
        ViTConfig,
        ViTImageProcessor,
        ViTModel,
    )

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tokens = specials + [char for char in _characters() if char != "\u2581"]
    tokenizer = BertTokenizer(vocab={token: i for i, token in enumerate(tokens)}, do_lower_case=False)
    processor = ViTImageProcessor(size={"height": 32, "width": 32})

    def model():
        encoder = ViTModel(ViTConfig(image_size=32, patch_size=8, hidden_size=16, num_hidden_layers=1,
                                     num_attention_heads=2, intermediate_size=32))
        decoder = BertLMHeadModel(BertConfig(
            vocab_size=len(tokens), hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
            max_position_embeddings=128, is_decoder=True, add_cross_attention=True))
        built = VisionEncoderDecoderModel(encoder=encoder, decoder=decoder)
        for config in (built.config, built.generation_config):
            config.decoder_start_token_id = tokenizer.cls_token_id
            config.pad_token_id = tokenizer.pad_token_id
            config.eos_token_id = tokenizer.sep_token_id
        return built

    return _save(folder, seed, model, tokenizer, processor)


_GENERATION = """
  default_options: {max_new_tokens: 8, num_beams: 1}"""


def _entry(model_id: str, kind: str, languages: str, extra: str = "") -> str:
    return f"""
- id: {model_id}
  kind: {kind}
  backend: huggingface
  languages: {languages}
  weights: {{repo: {model_id}}}{extra}{_GENERATION}
"""


def write_tiny_models(models: Path, entries: Path) -> None:
    """Build the test models under `models` and write their registry entries to `entries`."""
    build_marian(models / MARIAN, seed=0)
    build_marian(models / MARIAN_B, seed=1)
    build_marian(models / REMOVABLE, seed=2)
    build_marian(models / BROKEN, seed=3)
    weights_file = models / BROKEN / "model.safetensors"
    weights_file.write_bytes(weights_file.read_bytes()[:1000])
    build_m2m100(models / M2M100)
    build_nllb(models / NLLB)
    build_mbart50(models / MBART50)
    build_vision_ocr(models / OCR_JA)
    entries.mkdir(parents=True, exist_ok=True)
    (entries / "tiny.yaml").write_text(tiny_entries())


def tiny_entries() -> str:
    """The registry entries (YAML) of the models `write_tiny_models` builds."""
    # CTranslate2 in float32: the tests compare the server's translations with transformers', token
    # for token, and int8 rounds some of a random model's close choices otherwise.
    pair = "\n  languages_dst: [en]\n  settings: {compute_type: float32}"
    many = ("\n  languages_dst: [ja, en, es]\n  settings: {source: tokenizer_src_lang, target: forced_bos, "
            "target_token: '%s', compute_type: float32}")
    return "".join([
        _entry(MARIAN, "tsl", "[ja]", pair),
        _entry(MARIAN_B, "tsl", "[ja]", pair),
        _entry(REMOVABLE, "tsl", "[ja]", pair),
        _entry(MISSING, "tsl", "[ja]", pair),
        _entry(BROKEN, "tsl", "[ja]", pair),
        _entry(M2M100, "tsl", "[ja, en, es]", many % "__{code}__"),
        _entry(NLLB, "tsl", "[ja, en, es]", many % "{code}"
               + "\n  language_codes: {ja: jpn_Jpan, en: eng_Latn, es: spa_Latn}"),
        _entry(MBART50, "tsl", "[ja, en, es]", many % "{code}"
               + "\n  language_codes: {ja: ja_XX, en: en_XX, es: es_XX}"),
        _entry(OCR_JA, "ocr", "[ja]", "\n  settings: {grayscale: true, strip_spaces: true}"),
    ])
