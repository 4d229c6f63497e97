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
import os
import socket
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ["HF_HUB_OFFLINE"] = "1"
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from tests.tiny_hf import build_marian  # noqa: E402

MODEL_ID = "bench/marian-ja-en"
ENTRY = f"""
- id: {MODEL_ID}
  kind: tsl
  backend: huggingface
  description: Random Marian model (256 wide, 3 layers), for the batching benchmark.
  languages: [ja]
  languages_dst: [en]
  weights: {{repo: {MODEL_ID}}}
  options:
    max_new_tokens: {{type: int, default: 24, minimum: 1, description: Longest translation in tokens.}}
    num_beams: {{type: int, default: 1, minimum: 1, description: Beam width.}}
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _serve(work: Path, max_batch_size: int, port: int) -> str:
    """Deploy the app with one Translator replica batching up to `max_batch_size` texts."""
    from ray import serve

    import graph
    from core.settings import AppArgs

    raw_args, options = graph.read_config(graph.LOCAL_CONFIG)
    args = AppArgs.model_validate({
        **raw_args,
        "data_dir": str(work / f"data-{max_batch_size}"),
        "registry_dirs": [str(work / "entries")],
        "weights": {"models_dirs": [str(work / "models")]},
        "translator": {**raw_args.get("translator", {}), "max_batch_size": max_batch_size},
    })
    # One replica, so the comparison is of batching alone, not of autoscaling.
    translator = {k: v for k, v in options["Translator"].items() if k != "autoscaling_config"}
    options["Translator"] = {**translator, "num_replicas": 1}
    serve.run(graph.bind_graph(args, options), name="ocr_translate", route_prefix="/")
    url = f"http://127.0.0.1:{port}"
    client = httpx.Client(base_url=url, timeout=600)
    assert client.post("/set_lang/", json={"lang_src": "ja", "lang_dst": "en"}).status_code == 200
    chosen = client.post("/set_models/", json={"tsl_model_id": MODEL_ID})
    assert chosen.status_code == 200, chosen.text
    return url


def _measure(url: str, concurrency: int, rounds: int, label: str) -> float:
    """Requests per second over `rounds` waves of `concurrency` simultaneous distinct texts."""
    client = httpx.Client(base_url=url, timeout=600, limits=httpx.Limits(max_connections=concurrency))

    def one(text: str) -> None:
        response = client.post("/run_tsl/", json={"text": text})
        if response.status_code != 200:
            raise RuntimeError(f"run_tsl answered {response.status_code}: {response.text}")

    one(f"{label} warm-up")
    before = _forward_passes()
    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
        for wave in range(rounds):
            texts = [f"{label} wave {wave} sentence {i}: the quick brown fox" for i in range(concurrency)]
            list(pool.map(one, texts))
    elapsed = time.perf_counter() - started
    throughput = concurrency * rounds / elapsed
    print(f"{label:>12}: {concurrency * rounds} requests in {elapsed:.2f} s, {throughput:.1f} requests/s, "
          f"{_forward_passes() - before} forward passes")
    return throughput


def _forward_passes() -> int:
    from ray import serve

    stats = serve.get_deployment_handle("Translator", app_name="ocr_translate").stats.remote().result()
    return stats["calls"].get(MODEL_ID, 0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=4)
    options = parser.parse_args()

    import ray
    from ray import serve

    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        build_marian(work / "models" / MODEL_ID, d_model=256, layers=3)
        (work / "entries").mkdir()
        (work / "entries" / "bench.yaml").write_text(ENTRY)
        port = _free_port()
        ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR")
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        try:
            results = {}
            for label, size in (("batching on", options.concurrency), ("batching off", 1)):
                url = _serve(work, size, port)
                results[label] = _measure(url, options.concurrency, options.rounds, label)
                serve.delete("ocr_translate")
        finally:
            serve.shutdown()
            ray.shutdown()
    print(f"concurrency {options.concurrency}, {options.rounds} rounds, model {MODEL_ID} on CPU")
    print(f"batching speedup: {results['batching on'] / results['batching off']:.2f}x")


if __name__ == "__main__":
    main()
