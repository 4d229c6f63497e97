"""Batching on vs. off: N concurrent `run_tsl` calls on the same model, side by side in one run.

Starts a local Ray cluster and serves the app twice on the same Hugging Face Marian model
(randomly initialised here, 256 wide and 3 layers deep, so nothing is
downloaded): once with the Translator batching up to N texts per forward pass, once with
`max_batch_size: 1`. Each run sends ROUNDS waves of N concurrent requests with texts never
seen before (so the store cannot answer them), through real HTTP, and reports throughput.
The last line is `batching speedup: <ratio>x`.

    .venv/bin/python bench/batching.py [--concurrency 16] [--rounds 4]
"""

import argparse
import concurrent.futures
import tempfile
from pathlib import Path

from local_app import ROOT, app_args, choose, client, deploy, forward_passes, local_cluster, run_tsl, wave

from tests.support.tiny_hf import build_marian

MODEL_ID = "bench/marian-ja-en"
ENTRY = f"""
- id: {MODEL_ID}
  kind: tsl
  backend: huggingface
  description: Random Marian model (256 wide, 3 layers), for the batching benchmark.
  languages: [ja]
  languages_dst: [en]
  weights: {{repo: {MODEL_ID}}}
  default_options: {{max_new_tokens: 24, num_beams: 1}}
"""
def _serve(config: Path, work: Path, max_batch_size: int, port: int) -> str:
    """Deploy the app with one Translator replica batching up to `max_batch_size` texts."""
    url = deploy(config, app_args(config, work, f"data-{max_batch_size}", {"max_batch_size": max_batch_size}), port)
    choose(client(url, 1), "ja", "en", MODEL_ID)
    return url


def _measure(url: str, concurrency: int, rounds: int, label: str) -> float:
    """Requests per second over `rounds` waves of `concurrency` simultaneous distinct texts."""
    http = client(url, concurrency)
    run_tsl(http, f"{label} warm-up")
    before = forward_passes(MODEL_ID)
    elapsed = 0.0
    with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
        for number in range(rounds):
            texts = [f"{label} wave {number} sentence {i}: the quick brown fox" for i in range(concurrency)]
            elapsed += wave(http, pool, texts)[0]
    throughput = concurrency * rounds / elapsed
    print(f"{label:>12}: {concurrency * rounds} requests in {elapsed:.2f} s, {throughput:.1f} requests/s, "
          f"{forward_passes(MODEL_ID) - before} forward passes")
    return throughput


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--config", type=Path, default=ROOT / "configs" / "local.yaml",
                        help="Serve config (configs/gpu.yaml on a GPU machine)")
    options = parser.parse_args()

    from ray import serve

    with tempfile.TemporaryDirectory() as folder, local_cluster() as port:
        work = Path(folder)
        build_marian(work / "models" / MODEL_ID, d_model=256, layers=3)
        (work / "entries").mkdir()
        (work / "entries" / "bench.yaml").write_text(ENTRY)
        results = {}
        for label, size in (("batching on", options.concurrency), ("batching off", 1)):
            url = _serve(options.config, work, size, port)
            results[label] = _measure(url, options.concurrency, options.rounds, label)
            serve.delete("ocr_translate")
    print(f"concurrency {options.concurrency}, {options.rounds} rounds, model {MODEL_ID} on CPU")
    print(f"batching speedup: {results['batching on'] / results['batching off']:.2f}x")


if __name__ == "__main__":
    main()
