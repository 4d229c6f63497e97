"""CTranslate2 vs transformers: the same seq2seq model through the real Translator deployment, side by side.

Builds a random Marian model of opus-mt's shape (512 wide, 6 encoder and 6 decoder layers, 8
heads, feed-forward 2048; a 16k-piece sentencepiece vocabulary trained here on the text of
Python's standard library, so nothing is downloaded) and registers it twice, one entry per
engine, with the same generation options (at most 64 new tokens, as many beams as `--beams`).
It serves the app of `--config` on a local Ray cluster with one Translator replica holding both
models (the replica converts the model for CTranslate2 when it first loads it, before any
timing; the table shows what each engine loaded as, from the replica's stats), then sends
ROUNDS waves of CONCURRENCY simultaneous `run_tsl` calls to each engine in turn (waves
alternate, so a busy machine slows both alike), with sentences of the source language of
`--pair` never sent before. The last line is `ctranslate2 vs transformers: <ratio>x` (requests
per second).

    .venv/bin/python bench/translation_engines.py [--config configs/local.yaml] [--pair en-es] [--tiny]
"""

import argparse
import concurrent.futures
import itertools
import json
import tempfile
from pathlib import Path

from local_app import (
    OPUS_MT_SHAPE,
    OPUS_MT_VOCABULARY,
    TINY_SHAPE,
    TINY_VOCABULARY,
    app_args,
    choose,
    client,
    deploy,
    forward_passes,
    loaded_as,
    local_cluster,
    vocabulary_corpus,
    wave,
)

from bench.common import BENCH, ROOT, own_ray
from tests.support.tiny_hf import build_marian, sentencepiece_model

ENGINES = ("transformers", "ctranslate2")
SENTENCES = {
    "en": [
        "Please keep the door closed while the train is moving.",
        "The museum opens at nine in the morning on weekdays.",
        "I told you not to touch that sword, it belonged to my grandfather!",
        "Wait, where are you going at this hour?",
        "Turn left at the second traffic light and follow the signs to the station.",
        "Thank you for shopping with us, please come again.",
        "We have to leave before the storm reaches the village.",
        "No smoking in this area.",
        "Did you really think I would forget your birthday?",
        "The last bus leaves at eleven thirty from platform four.",
        "Add two cups of flour and stir until the dough is smooth.",
        "Emergency exit: do not block this passage.",
        "He has been training every day since the tournament was announced.",
        "Fresh bread, baked every morning.",
        "If you lose your ticket, please ask the staff at the information desk.",
        "This is the first time I have seen snow in the city.",
    ],
    "ja": [
        "電車が動いている間はドアを閉めてください。", "博物館は平日の朝九時に開きます。",
        "その剣に触るなと言っただろう、祖父の形見なんだ！", "待って、こんな時間にどこへ行くの？",
        "二つ目の信号を左に曲がって、駅の案内に従ってください。", "ご来店ありがとうございました。",
        "嵐が村に来る前に出発しなければならない。", "ここは禁煙です。",
        "本当に君の誕生日を忘れると思ったの？", "最終バスは十一時半に四番乗り場から出ます。",
        "小麦粉を二カップ加えて、なめらかになるまで混ぜます。", "非常口：通路をふさがないでください。",
        "大会が発表されてから、彼は毎日練習している。", "焼きたてのパン、毎朝焼いています。",
        "切符をなくした場合は、案内所の係員にお尋ねください。", "街で雪を見たのは初めてだ。",
    ],
}


def _entries(pair: tuple[str, str], beams: int) -> list[dict]:
    generation = {"max_new_tokens": 64, "num_beams": beams}  # the backend declares them; entries set defaults
    return [{"id": f"bench/marian-{engine}", "kind": "tsl", "backend": "huggingface", "languages": [pair[0]],
             "languages_dst": [pair[1]], "weights": {"repo": "bench/marian"}, "settings": {"engine": engine},
             "default_options": generation, "description": f"Random Marian of opus-mt's shape, on {engine}."}
            for engine in ENGINES]


def _build(work: Path, pair: tuple[str, str], beams: int, tiny: bool) -> None:
    vocabulary = sentencepiece_model(vocabulary_corpus(tiny), TINY_VOCABULARY if tiny else OPUS_MT_VOCABULARY)
    build_marian(work / "models" / "bench" / "marian", spm_model=vocabulary, **(TINY_SHAPE if tiny else OPUS_MT_SHAPE))
    (work / "entries").mkdir()
    (work / "entries" / "bench.yaml").write_text(json.dumps(_entries(pair, beams)))  # YAML reads JSON


def _texts(source: str, count: int) -> list[list[str]]:
    """Distinct two-sentence texts (a speech bubble, a sign with a subtitle), `count` per wave."""
    sentences = SENTENCES.get(source, SENTENCES["en"])
    separator = "" if source in ("ja", "zh") else " "
    texts = [separator.join(two) for two in itertools.permutations(sentences, 2)]
    return [texts[start:start + count] for start in range(0, len(texts) - count + 1, count)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, default=ROOT / "configs" / "local.yaml", help="Serve config file")
    parser.add_argument("--pair", default="en-es", help="source-target languages of the entries")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--beams", type=int, default=4, help="num_beams of both entries (4, as opus-mt's)")
    parser.add_argument("--tiny", action="store_true",
                        help="the test suite's run: a tiny model, 2 callers, one round (the ratio means nothing)")
    parser.add_argument("--out", type=Path, default=BENCH, help="unused: it writes no file")
    options = parser.parse_args()
    if options.tiny:
        options.concurrency, options.rounds = 2, 1
    pair = tuple(options.pair.split("-"))
    waves = _texts(pair[0], options.concurrency)[:options.rounds]
    assert len(waves) == options.rounds, "not enough distinct texts for that many rounds"

    own_ray()
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        _build(work, pair, options.beams, options.tiny)
        with local_cluster() as port:
            url = deploy(options.config, app_args(options.config, work, "data"), port)
            http = client(url, options.concurrency)
            for engine in ENGINES:  # loads both on the replica (max_models_per_replica: 2 in local.yaml)
                choose(http, *pair, f"bench/marian-{engine}")
            engines = {engine: loaded_as(f"bench/marian-{engine}") for engine in ENGINES}
            seconds, answers = dict.fromkeys(ENGINES, 0.0), {engine: [] for engine in ENGINES}
            before = {engine: forward_passes(f"bench/marian-{engine}") for engine in ENGINES}
            with concurrent.futures.ThreadPoolExecutor(options.concurrency) as pool:
                for texts in waves:
                    for engine in ENGINES:
                        elapsed, answered = wave(http, pool, texts, tsl_model_id=f"bench/marian-{engine}")
                        seconds[engine] += elapsed
                        answers[engine] += answered
            passes = {engine: forward_passes(f"bench/marian-{engine}") - before[engine] for engine in ENGINES}

    requests = options.concurrency * options.rounds
    throughput = {engine: requests / seconds[engine] for engine in ENGINES}
    print(f"{options.pair}, {options.rounds} rounds of {options.concurrency} concurrent run_tsl, max_new_tokens 64, "
          f"num_beams {options.beams}, config {options.config.name}")
    print(f"{'engine':<13} {'loaded as':<32} {'requests':>8} {'seconds':>8} {'req/s':>7} {'passes':>7} "
          f"{'chars out':>9}")
    for engine in ENGINES:
        chars = sum(map(len, answers[engine])) / requests
        print(f"{engine:<13} {engines[engine]:<32} {requests:>8} {seconds[engine]:>8.2f} {throughput[engine]:>7.2f} "
              f"{passes[engine]:>7} {chars:>9.1f}")
    print(f"ctranslate2 vs transformers: {throughput['ctranslate2'] / throughput['transformers']:.1f}x")


if __name__ == "__main__":
    main()
