"""Batching on vs. off: N concurrent `run_tsl` calls on the same model, side by side in one run.

Starts a local Ray cluster and serves the app of `--config` twice on the same Hugging Face Marian
model, of the size readers run (opus-mt's: 512 wide, 6 encoder and 6 decoder layers, a 16k-piece
vocabulary; randomly initialised here, so nothing is downloaded), on the engine the config gives
Hugging Face translation models (CTranslate2 in configs/local.yaml): once with the Translator
batching up to N texts per forward pass, once with `max_batch_size: 1`. Each run sends ROUNDS waves
of N concurrent requests with texts never seen before (so the store cannot answer them), through real
HTTP, and reports throughput. The last line is `batching speedup: <ratio>x`.

    .venv/bin/python bench/batching.py [--concurrency 16] [--rounds 4] [--tiny]
"""

import argparse
import concurrent.futures
import tempfile
from pathlib import Path

from local_app import (
    app_args,
    choose,
    client,
    deploy,
    forward_passes,
    loaded_as,
    local_cluster,
    marian_of_opus_mt_size,
    run_tsl,
    wave,
)

from bench.common import BENCH, ROOT, own_ray
from tests.support.tiny_hf import build_marian

MODEL_ID = "bench/marian-en-es"
GENERATION = {"max_new_tokens": 64, "num_beams": 4}
"""A sentence's worth of tokens (a random model seldom ends one sooner), with opus-mt's 4 beams."""
ENTRY = f"""
- id: {MODEL_ID}
  kind: tsl
  backend: huggingface
  description: Random Marian model of opus-mt's size, for the batching benchmark.
  languages: [en]
  languages_dst: [es]
  weights: {{repo: {MODEL_ID}}}
  default_options: {{max_new_tokens: {GENERATION["max_new_tokens"]}, num_beams: {GENERATION["num_beams"]}}}
"""


def _serve(config: Path, work: Path, max_batch_size: int, port: int) -> str:
    """Deploy the app with one Translator replica batching up to `max_batch_size` texts."""
    url = deploy(config, app_args(config, work, f"data-{max_batch_size}", {"max_batch_size": max_batch_size}), port)
    choose(client(url, 1), "en", "es", MODEL_ID)
    return url


def _measure(url: str, concurrency: int, rounds: int, label: str) -> float:
    """Requests per second over `rounds` waves of `concurrency` simultaneous distinct texts."""
    http = client(url, concurrency)
    run_tsl(http, f"{label} warm-up")
    before = forward_passes(MODEL_ID)
    elapsed = 0.0
    with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
        for number in range(rounds):
            texts = [f"{label}, wave {number}, text {i}: please keep the door closed while the train is moving."
                     for i in range(concurrency)]
            elapsed += wave(http, pool, texts)[0]
    throughput = concurrency * rounds / elapsed
    print(f"{label:>12}: {concurrency * rounds} requests in {elapsed:.2f} s, {throughput:.1f} requests/s, "
          f"{forward_passes(MODEL_ID) - before} forward passes", flush=True)
    return throughput


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--config", type=Path, default=ROOT / "configs" / "local.yaml",
                        help="Serve config (configs/gpu.yaml on a GPU machine)")
    parser.add_argument("--tiny", action="store_true",
                        help="the test suite's run: a tiny model, 4 callers, one round (the ratio means nothing)")
    parser.add_argument("--out", type=Path, default=BENCH, help="unused: it writes no file")
    options = parser.parse_args()
    if options.tiny:
        options.concurrency, options.rounds = 4, 1
    own_ray()
    from ray import serve

    with tempfile.TemporaryDirectory() as folder, local_cluster() as port:
        work = Path(folder)
        build_marian(work / "models" / MODEL_ID, **marian_of_opus_mt_size(options.tiny))
        (work / "entries").mkdir()
        (work / "entries" / "bench.yaml").write_text(ENTRY)
        results, engines = {}, {}
        for label, size in (("batching on", options.concurrency), ("batching off", 1)):
            url = _serve(options.config, work, size, port)
            engines[label] = loaded_as(MODEL_ID)
            results[label] = _measure(url, options.concurrency, options.rounds, label)
            serve.delete("ocr_translate")
    size = "tiny (--tiny)" if options.tiny else "opus-mt's size (512 wide, 6+6 layers, 16000 pieces)"
    print(f"concurrency {options.concurrency}, {options.rounds} rounds, model {MODEL_ID} of {size}, "
          f"max_new_tokens {GENERATION['max_new_tokens']}, num_beams {GENERATION['num_beams']}, "
          f"config {options.config.name}, loaded as {', '.join(sorted(set(engines.values())))}")
    print(f"batching speedup: {results['batching on'] / results['batching off']:.2f}x")


if __name__ == "__main__":
    main()
