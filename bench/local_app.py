"""The app on a local Ray cluster, for benchmarks of the Translator (`batching.py`, `translation_engines.py`).

A cluster of 2 CPUs with Serve on a free port; the app of a Serve config deployed with the
benchmark's own model entries and models folder, its own data folder and one Translator replica
(no autoscaling, so a comparison is of what the benchmark changes alone); a random Marian model of
opus-mt's size; waves of concurrent `run_tsl` calls through real HTTP; the Translator's forward-pass
counter and the engines its models loaded as.
"""

import concurrent.futures
import contextlib
import os
import sys
import sysconfig
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ["HF_HUB_OFFLINE"] = "1"

import httpx  # noqa: E402

from bench.common import free_port  # noqa: E402

APP = "ocr_translate"
OPUS_MT_SHAPE = {"d_model": 512, "layers": 6, "encoder_attention_heads": 8, "decoder_attention_heads": 8,
                 "encoder_ffn_dim": 2048, "decoder_ffn_dim": 2048, "max_position_embeddings": 512}
"""The size of the opus-mt models readers run (Helsinki-NLP/opus-mt-ja-en and its siblings): 512 wide,
6 encoder and 6 decoder layers, 8 heads, feed-forward 2048."""
OPUS_MT_VOCABULARY = 16000
TINY_SHAPE = {"d_model": 16, "layers": 1}
"""`--tiny` runs' model: the tests' tiny Marian, for a run that only has to go through."""
TINY_VOCABULARY = 200


@contextlib.contextmanager
def local_cluster() -> Iterator[int]:
    """A local Ray cluster with Serve listening on 127.0.0.1; yields the HTTP port. Call `own_ray()` first."""
    import ray
    from ray import serve

    port = free_port()
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    try:
        yield port
    finally:
        serve.shutdown()
        ray.shutdown()


def app_args(config: Path, work: Path, data: str, translator: dict[str, Any] | None = None):
    """The config's app args with the models and entries of `work`, the data folder `work/<data>`,
    the `translator` settings given (batching) replaced, and no preloading of the config's default
    selection (its translation model would take one of the replica's model slots)."""
    import graph
    from core.settings import AppArgs

    raw_args, _ = graph.read_config(config)
    return AppArgs.model_validate({
        **raw_args,
        "data_dir": str(work / data),
        "registry_dirs": [str(work / "entries")],
        "weights": {"models_dirs": [str(work / "models")]},
        "translator": {**raw_args.get("translator", {}), **(translator or {})},
        "preload_selected_models": False,
    })


def deploy(config: Path, args, port: int) -> str:
    """Deploy the app with `args` and the config's deployment options, one Translator replica; its URL."""
    from ray import serve

    import graph

    _, options = graph.read_config(config)
    translator = {k: v for k, v in options["Translator"].items() if k != "autoscaling_config"}
    options["Translator"] = {**translator, "num_replicas": 1}
    serve.run(graph.bind_graph(args, options), name=APP, route_prefix="/")
    return f"http://127.0.0.1:{port}"


def client(url: str, concurrency: int) -> httpx.Client:
    return httpx.Client(base_url=url, timeout=600, limits=httpx.Limits(max_connections=concurrency))


def choose(http: httpx.Client, lang_src: str, lang_dst: str, model_id: str) -> None:
    """Select languages and translation model; the replica loads the model before this returns."""
    assert http.post("/set_lang/", json={"lang_src": lang_src, "lang_dst": lang_dst}).status_code == 200
    chosen = http.post("/set_models/", json={"tsl_model_id": model_id})
    assert chosen.status_code == 200, chosen.text


def run_tsl(http: httpx.Client, text: str, **body: Any) -> str:
    response = http.post("/run_tsl/", json={"text": text, **body})
    if response.status_code != 200:
        raise RuntimeError(f"run_tsl answered {response.status_code}: {response.text}")
    return response.json()["text"]


def wave(http: httpx.Client, pool: concurrent.futures.Executor, texts: list[str], **body: Any) -> tuple[float, list]:
    """Send every text at once; the seconds until the last answer, and the answers."""
    started = time.perf_counter()
    answers = list(pool.map(lambda text: run_tsl(http, text, **body), texts))
    return time.perf_counter() - started, answers


def translator_stats() -> dict[str, Any]:
    """The Translator replica's `stats()`: its loaded models' engines, its counters."""
    from ray import serve

    return serve.get_deployment_handle("Translator", app_name=APP).stats.remote().result()


def forward_passes(model_id: str) -> int:
    """Backend calls the Translator made for the model so far."""
    return translator_stats()["calls"].get(model_id, 0)


def vocabulary_corpus(tiny: bool = False) -> list[str]:
    """Lines of the text of Python's standard library (of five of its modules with `tiny`): what the
    benchmarks' sentencepiece vocabularies are trained on, so that nothing is downloaded."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    return [line.strip() for path in sorted(stdlib.glob("*.py"))[:5 if tiny else None]
            for line in path.read_text(errors="ignore").splitlines() if len(line.strip()) > 20]


def marian_of_opus_mt_size(tiny: bool = False) -> dict[str, Any]:
    """`build_marian`'s arguments for a random Marian model of opus-mt's size (TINY_SHAPE with `tiny`),
    with a vocabulary of opus-mt's size trained on `vocabulary_corpus`."""
    from tests.support.tiny_hf import sentencepiece_model

    vocabulary = sentencepiece_model(vocabulary_corpus(tiny), TINY_VOCABULARY if tiny else OPUS_MT_VOCABULARY)
    return {"spm_model": vocabulary, **(TINY_SHAPE if tiny else OPUS_MT_SHAPE)}


def loaded_as(model_id: str) -> str:
    """The engine, precision and device the Translator replica runs `model_id` on (its stats)."""
    return translator_stats()["engines"][model_id]
