"""`make bench`: ours against the original, measured side by side in one run on this machine.

One after the other, so they never share the CPU, on the same rendered images (whose text the bench
knows, so each answer's character error rate is measured) with a pass-through translator:

- direct:   our default pipeline's stage code and backends called in this process (no HTTP, Serve, Ray);
- ours:     the Serve app of `--config` over HTTP, as the extension calls it, with the config's
            default box and OCR models (PP-OCRv4 on ONNX Runtime in configs/local.yaml);
- engines:  ours with EasyOCR (CRAFT + English recognizer) on torch, then on ONNX Runtime: same model,
            other engine; then one caller again in the other order (ONNX Runtime first), on images of
            its own, so the headline ratio is a mean of two rounds, neither engine always measured first;
- original: django-ocr-translate with its default EasyOCR pipeline, in its own virtualenv
            (original_server.py), reading the same EasyOCR weight files.

Every work call gets an image never sent before (each load has its own), so no cache answers for a
model. Peak memory (proportional set size, so shared libraries count once) of every process of each
server, Ray's own included, is sampled under a load of its own after the timed ones (sampling costs
CPU). Writes its section of bench/RESULTS.md (tables) and bench/results.png (`--out` for another
folder) and ends with one line per headline ratio.

    .venv/bin/python bench/baseline.py [--config configs/local.yaml] [--images 8] [--tiny]

`--tiny` (the test suite's run): one image per load, one caller, one round of the engines, two lazy
calls, and the original side only where its virtualenv (bench/.original-venv) is there already.
"""

import argparse
import asyncio
import concurrent.futures
import contextlib
import datetime
import os
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx  # noqa: E402

from bench import original_server  # noqa: E402
from bench.common import BENCH, ROOT, free_port, machine, own_ray, write_section  # noqa: E402
from tests.support.images import char_error_rate, encode, render  # noqa: E402

EASYOCR = {"box_model_id": "easyocr/craft", "ocr_model_id": "easyocr/en", "tsl_model_id": "original"}
EASYOCR_ENGINES = ("torch", "onnx")
ENGINE_CONCURRENCY = (1, 4)
"""The headline compares one caller's images/s: the reader's wait for one image, the engine alone at work."""
CONCURRENCY = (1, 4, 8)
"""Callers of each load of ours and the original's (one caller always: the headline ratios start there)."""
MEMORY_LOAD = 0
"""Key of a load's image set that `measure_server` runs, at its largest concurrency, with memory sampled."""
WORDS = ("quiet", "harbour", "lantern", "river", "station", "market", "garden", "window", "bridge", "letter",
         "morning", "yellow", "winter", "signal", "island", "forest", "silver", "travel", "museum", "corner")


@dataclass(frozen=True)
class BenchImage:
    contents: str
    md5: str
    text: str
    """What is written on it, blocks in reading order."""


def bench_image(index: int) -> BenchImage:
    """A sign-like picture, two blocks of two lines, whose words differ from every other index's."""
    words = [WORDS[(index * 7 + k * 3) % len(WORDS)] for k in range(6)]
    blocks = [((30, 30), f"Notice {index}: the {words[0]} {words[1]}\nopens near the {words[2]}."),
              ((30, 200), f"Take the {words[3]} line\nto the {words[4]} {words[5]}.")]
    return BenchImage(*encode(render(blocks, size=(640, 330))), " ".join(text for _, text in blocks))


@dataclass
class Run:
    """Latencies (s) of the calls of one load, the wall time it took, and each answer's character error rate."""

    latencies: list[float]
    wall_s: float
    errors: list[float] = field(default_factory=list)

    @property
    def cer(self) -> float:
        return statistics.fmean(self.errors) if self.errors else float("nan")

    @property
    def per_s(self) -> float:
        return len(self.latencies) / self.wall_s

    def percentile(self, p: int) -> float:
        """The p-th percentile latency in ms (a tiny run's load of one call: that call's)."""
        if len(self.latencies) == 1:
            return self.latencies[0] * 1000
        return statistics.quantiles(self.latencies, n=100, method="inclusive")[p - 1] * 1000


def answer_error(result: list[dict], image: BenchImage) -> float:
    return char_error_rate(" ".join(block["ocr"] for block in result), image.text)


def http_load(url: str, images: list[BenchImage], concurrency: int, lazy: bool = False) -> Run:
    """POST each image (or only its md5, `lazy`) to /run_ocrtsl/ from `concurrency` callers, each with
    its own connection."""
    local = threading.local()

    def send(image: BenchImage) -> tuple[float, float]:
        if not hasattr(local, "client"):
            local.client = httpx.Client(base_url=url, timeout=600)
        body = {"md5": image.md5} if lazy else {"md5": image.md5, "contents": image.contents}
        started = time.perf_counter()
        response = local.client.post("/run_ocrtsl/", json=body)
        if response.status_code != 200:
            raise RuntimeError(f"{url} answered {response.status_code}: {response.text[:300]}")
        return time.perf_counter() - started, answer_error(response.json()["result"], image)

    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
        answers = list(pool.map(send, images))
    return Run([latency for latency, _ in answers], time.perf_counter() - started, [e for _, e in answers])


class PeakMemory:
    """Peak of the summed proportional set size (PSS: shared pages split between their processes) of a
    process tree, sampled twice a second while the `with` block runs. A sample costs the kernel about
    10 ms per large process (it walks their page tables), a tenth of a core for a Ray server: so it
    runs during a load of its own, never during the timed ones."""

    def __init__(self, root: int, include_root: bool):
        self.root, self.include_root, self.peak = root, include_root, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _total(self) -> int:
        import psutil

        root = psutil.Process(self.root)
        total = 0
        for process in [*([root] if self.include_root else []), *root.children(recursive=True)]:
            with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                total += process.memory_full_info().pss
        return total

    def _sample(self) -> None:
        while not self._stop.wait(0.5):
            self.peak = max(self.peak, self._total())

    def __enter__(self) -> "PeakMemory":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._total())


def measure_server(url: str, sets: dict[int, list[BenchImage]], warmup: BenchImage, lazy_calls: int,
                   memory: PeakMemory) -> dict:
    """Timed loads at each concurrency, then the largest load again on images of its own with memory
    sampled, then the lazy calls."""
    http_load(url, [warmup], 1)  # models loaded and warm
    runs = {c: http_load(url, images, c) for c, images in sets.items() if c != MEMORY_LOAD}
    if MEMORY_LOAD in sets:
        with memory:
            http_load(url, sets[MEMORY_LOAD], max(runs))
    known = [image for c, images in sets.items() if c != MEMORY_LOAD for image in images]
    lazy = http_load(url, [known[i % len(known)] for i in range(lazy_calls)], 1, lazy=True) if lazy_calls else None
    return {"runs": runs, "lazy": lazy, "memory_gb": memory.peak / 1e9}


class DirectStages:
    """The stage functions our deployments run, on backends loaded in this process."""

    def __init__(self, registry, runtime):
        self.registry, self.runtime, self.backends = registry, runtime, {}

    def _backend(self, kind: str, model_id: str):
        if model_id not in self.backends:
            self.backends[model_id] = self.registry.load_backend(model_id, kind, self.runtime)
        return self.backends[model_id]

    async def detect(self, model_id, image, lang, options):
        from inference.detection import detect_blocks

        return detect_blocks(self._backend("box", model_id), image, lang, options)

    async def read(self, model_id, crops, lang, options):
        from inference.grouping import raise_failure
        from inference.reading import OCRItem, read_grouped

        items = [OCRItem(crop, lang, options) for crop in crops]
        return raise_failure(read_grouped(self._backend("ocr", model_id), items)[0])

    async def translate(self, model_id, texts, src, dst, options, glossary):
        from inference.translation import translate_texts

        return translate_texts(self._backend("tsl", model_id), texts, src, dst, options, glossary)

    async def warm(self, kind, model_id):
        self._backend(kind, model_id)


def engine_settings(engine: str) -> dict[str, dict[str, str]]:
    """The config's model settings that run both EasyOCR models on `engine`."""
    return {EASYOCR["box_model_id"]: {"engine": engine}, EASYOCR["ocr_model_id"]: {"engine": engine}}


def default_models(config: Path) -> dict[str, str]:
    """The config's default box and OCR models, with the pass-through translator (both sides use one)."""
    from core.settings import AppArgs
    from graph import read_config

    defaults = AppArgs.model_validate(read_config(config)[0]).default_selection
    return {"box_model_id": defaults.box_model, "ocr_model_id": defaults.ocr_model, "tsl_model_id": "original"}


def measure_direct(models: dict[str, str], images: list[BenchImage], warmup: BenchImage, folder: Path) -> Run:
    """The same requests through `OcrTranslateService` with in-process stages: everything but HTTP and Serve."""
    import torch

    from core.settings import Limits, sqlite_url
    from core.slots import chosen
    from models_registry import Registry
    from models_registry.backends.base import Runtime
    from service.jobs import Overrides
    from service.service import OcrTranslateService
    from service.store import Store

    torch.set_num_threads(1)  # as in a replica of configs/local.yaml (under one CPU each)
    registry = Registry.load()
    service = OcrTranslateService(Store(sqlite_url(folder)), registry, DirectStages(registry, Runtime("cpu", 1)),
                                  Limits())
    asyncio.run(service.catalogue.set_lang("en", "es"))
    asyncio.run(service.catalogue.set_models(chosen(box=models["box_model_id"], ocr=models["ocr_model_id"],
                                                    tsl=models["tsl_model_id"])))

    def call(image: BenchImage) -> tuple[float, float]:
        started = time.perf_counter()
        result = asyncio.run(service.pipeline.run_ocrtsl(contents=image.contents, md5=image.md5, force=False,
                                                         given_options=None, overrides=Overrides()))
        return time.perf_counter() - started, answer_error([block.model_dump() for block in result], image)

    call(warmup)
    started = time.perf_counter()
    answers = [call(image) for image in images]
    return Run([latency for latency, _ in answers], time.perf_counter() - started, [e for _, e in answers])


def measure_ours(config: Path, models: dict[str, str], sets: dict[int, list[BenchImage]], warmup: BenchImage,
                 lazy_calls: int, folder: Path, model_settings: dict | None = None) -> dict:
    import ray
    from ray import serve

    import graph

    port = free_port()
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        serve.run(graph.app_from_config(config, data_dir=str(folder), model_settings=model_settings or {}),
                  name="ocr_translate", route_prefix="/")
        url = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=url, timeout=600) as client:
            client.post("/set_lang/", json={"lang_src": "en", "lang_dst": "es"}).raise_for_status()
            client.post("/set_models/", json=models).raise_for_status()
        # Every process of the server: Ray's own (GCS, raylet, workers) are this driver's descendants.
        return measure_server(url, sets, warmup, lazy_calls, PeakMemory(os.getpid(), include_root=False))
    finally:
        serve.shutdown()
        ray.shutdown()


def measure_original(sets, warmup, lazy_calls: int, folder: Path) -> dict:
    original_server.ensure_venv()
    with original_server.start(free_port(), folder) as server:
        original_server.prepare(server.url, original_server.TSL_PASSTHROUGH)
        return measure_server(server.url, sets, warmup, lazy_calls, PeakMemory(server.process.pid, include_root=True))


def _row(name: str, c: int, run: Run) -> str:
    return (f"| {name} | {c} | {run.per_s:.2f} | {run.percentile(50):.0f} | {run.percentile(95):.0f} | "
            f"{run.cer:.3f} |")


ORIGINAL_ROWS = "original (django-ocr-translate)"


def write_results(out: Path, command: str, models: dict, direct: Run, ours: dict, engines: dict,
                  repeats: dict[str, Run], original: dict | None, headlines: list[str], images: int) -> None:
    """The baseline section of out/RESULTS.md: tables, the plot, the headline ratios."""
    rows = [_row("direct (in process, no HTTP/Serve)", 1, direct)]
    for name, result in (("ours (Ray Serve, HTTP)", ours), (ORIGINAL_ROWS, original)):
        rows += [_row(name, c, run) for c, run in result["runs"].items()] if result else []
    engine_rows = [_row(f"ours, EasyOCR on {engine}", c, run) for engine, result in engines.items()
                   for c, run in result["runs"].items()]
    engine_rows += [_row(f"ours, EasyOCR on {engine}, second round", 1, run) for engine, run in repeats.items()]
    rounds = [engines["onnx"]["runs"][1].per_s / engines["torch"]["runs"][1].per_s]
    if repeats:
        rounds.append(repeats["onnx"].per_s / repeats["torch"].per_s)
    servers = (("ours", ours), *((("original", original),) if original else ()))
    lazy = [f"| {name} | {result['lazy'].percentile(50):.1f} | {result['lazy'].percentile(99):.1f} |"
            for name, result in servers]
    memory = [f"| {name} | {result['memory_gb']:.2f} |" for name, result in
              (*servers[:1], *((f"ours, EasyOCR on {e}", r) for e, r in engines.items()), *servers[1:])]
    missing = "" if original else (
        "\n**The original was not measured in this run** (its virtualenv, bench/.original-venv, was absent), "
        "so no table has its rows and no ratio compares with it.\n")
    text = f"""## Ours against the original (`bench/baseline.py`)

Run on {datetime.date.today()}: `{command}`, on {machine()}.
{missing}
{images} distinct rendered sign-like images (640x330 px, two blocks of two lines), each load with images
of its own, so every work call runs the models; pass-through translation on both sides, so the numbers
are about finding and reading text. Ours runs `{models["config"]}` with its default pipeline:
box model `{models["box_model_id"]}`, OCR model `{models["ocr_model_id"]}`. The original runs
django-ocr-translate 0.7.4 with its default EasyOCR pipeline (ocr-translate-easyocr 0.5.0 for CRAFT
boxes, a bench plugin adding EasyOCR's English recognizer, which its plugin lacks) in its own
virtualenv, on the same EasyOCR weight files, as its start script runs it (Django's threaded server,
torch on every core). CER: character error rate of each answer's OCR text against the rendered text.

### Work calls (`run_ocrtsl` with the image)

| server | concurrency | images/s | p50 ms | p95 ms | CER |
| --- | --- | --- | --- | --- | --- |
{chr(10).join(rows)}

### Same model, faster engine: ours with EasyOCR (CRAFT + English recognizer) on torch and on ONNX Runtime

| server | concurrency | images/s | p50 ms | p95 ms | CER |
| --- | --- | --- | --- | --- | --- |
{chr(10).join(engine_rows)}

### Peak memory under the work-call load (PSS of every process of the server, Ray's own included)

| server | GB |
| --- | --- |
{chr(10).join(memory)}

### Lazy calls (`run_ocrtsl` with only the md5 of a known image, one at a time)

| server | p50 ms | p99 ms |
| --- | --- | --- |
{chr(10).join(lazy)}

![throughput and latency](results.png)

### Reading the numbers

Ours is faster mostly because of its default pipeline: PP-OCRv4's detector on ONNX Runtime finds the
lines in tens of milliseconds where CRAFT on torch takes seconds, and its recognizer reads them more
exactly than EasyOCR's (CER above). Memory stays at the original's level because the default models
are small ONNX files and no replica of the default pipeline imports torch. With EasyOCR itself, the
ONNX Runtime engine is faster than torch at the same CPU share; both are bounded by CRAFT's
convolutions (97% of ONNX Runtime's time) on two cores. In one process, without Serve, CRAFT takes
0.74 s on ONNX Runtime and 1.04 s on torch per image (1.4x), which bounds the ratio over HTTP.
The machine is shared and noisy: between runs on one day `overhead` moved between 0.90x and
1.36x and `vs original` at 4 callers between 5.2x and 7.7x. `onnx craft vs torch` is the mean of
rounds in opposite orders (neither engine always measured first); its rounds read
{" and ".join(f"{ratio:.2f}x" for ratio in rounds)} in this run.

### Headline ratios

```
{chr(10).join(headlines)}
```
"""
    write_section(out, "baseline", text)


def plot(out: Path, direct: Run, ours: dict, original: dict | None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    levels = list(ours["runs"])
    for name, result, style in (("ours", ours, "o-"), ("original", original, "s--")):
        if not result:
            continue
        left.plot(levels, [result["runs"][c].per_s for c in levels], style, label=name)
        right.plot(levels, [result["runs"][c].percentile(50) / 1000 for c in levels], style, label=f"{name} p50")
        right.plot(levels, [result["runs"][c].percentile(95) / 1000 for c in levels], style, alpha=0.4,
                   label=f"{name} p95")
    left.plot([1], [direct.per_s], "k^", label="direct, in process")
    left.set(title="Throughput", xlabel="concurrent callers", ylabel="images / s", xticks=levels)
    right.set(title="Latency of a work call", xlabel="concurrent callers", ylabel="seconds", xticks=levels)
    for axes in (left, right):
        axes.grid(alpha=0.3)
        axes.legend()
    figure.tight_layout()
    figure.savefig(out / "results.png", dpi=100)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, default=ROOT / "configs" / "local.yaml",
                        help="Serve config of ours (configs/gpu.yaml on a GPU machine)")
    parser.add_argument("--images", type=int, default=8, help="images per load (at least two rounds of callers)")
    parser.add_argument("--lazy-calls", type=int, default=200)
    parser.add_argument("--tiny", action="store_true", help="the test suite's run (above); its figures mean nothing")
    parser.add_argument("--out", type=Path, default=BENCH, help="folder of RESULTS.md and results.png (bench/)")
    options = parser.parse_args()
    own_ray()
    config = options.config.resolve()
    models = default_models(config)
    concurrency, engine_concurrency, rounds_of_callers = CONCURRENCY, ENGINE_CONCURRENCY, 2
    if options.tiny:
        options.images, options.lazy_calls = 1, 2
        concurrency, engine_concurrency, rounds_of_callers = (1,), (1,), 1
    with_original = not options.tiny or original_server.VENV.exists()

    index = 1

    def images_for(callers: int) -> list[BenchImage]:
        nonlocal index
        count = max(options.images, rounds_of_callers * callers)
        index += count
        return [bench_image(index - count + i) for i in range(count)]

    warmup = bench_image(0)
    sets = {c: images_for(c) for c in concurrency} | {MEMORY_LOAD: images_for(max(concurrency))}
    engine_sets = {engine: {c: images_for(c) for c in engine_concurrency}
                   | {MEMORY_LOAD: images_for(max(engine_concurrency))} for engine in EASYOCR_ENGINES}
    second_round = {} if options.tiny else {engine: {1: images_for(1)} for engine in reversed(EASYOCR_ENGINES)}
    images = index
    with tempfile.TemporaryDirectory(prefix="ocr-bench-") as folder:
        work = Path(folder)
        print(f"direct: {len(sets[1])} images one at a time", flush=True)
        direct = measure_direct(models, sets[1], warmup, work / "direct")
        print(f"ours: {sum(map(len, sets.values()))} images at concurrency {concurrency} (the largest twice, "
              f"the second time with memory sampled), then {options.lazy_calls} lazy calls", flush=True)
        ours = measure_ours(config, models, sets, warmup, options.lazy_calls, work / "ours")
        engines, repeats = {}, {}
        for engine, engine_set in engine_sets.items():
            print(f"ours with EasyOCR on {engine}", flush=True)
            engines[engine] = measure_ours(config, EASYOCR, engine_set, warmup, 0, work / engine,
                                           engine_settings(engine))
        for engine, engine_set in second_round.items():
            print(f"ours with EasyOCR on {engine}, one caller again", flush=True)
            repeats[engine] = measure_ours(config, EASYOCR, engine_set, warmup, 0, work / f"{engine}-again",
                                           engine_settings(engine))["runs"][1]
        if with_original:
            print("original: the same (its virtualenv is built first if missing)", flush=True)
            original = measure_original(sets, warmup, options.lazy_calls, work / "original")
        else:
            print(f"original: skipped, its virtualenv {original_server.VENV.relative_to(ROOT)} is absent "
                  "(`make bench` builds it)", flush=True)
            original = None
    servers = (("ours", ours), *((f"ours/{e}", r) for e, r in engines.items()),
               *((("original", original),) if original else ()))
    for name, result in servers:
        for c, run in result["runs"].items():
            print(f"{name:12} c={c}: {run.per_s:5.2f} images/s  p50 {run.percentile(50):6.0f} ms  "
                  f"p95 {run.percentile(95):6.0f} ms  cer {run.cer:.3f}")
        print(f"{name:12} peak memory {result['memory_gb']:.2f} GB")
    print(f"direct       c=1: {direct.per_s:5.2f} images/s  p50 {direct.percentile(50):6.0f} ms")

    def cer(result: dict) -> float:
        return statistics.fmean(e for run in result["runs"].values() for e in run.errors)

    def ratio(c: int) -> str:
        return f"vs original c={c}: {ours['runs'][c].per_s / original['runs'][c].per_s:.1f}x"

    engine_per_s = {engine: statistics.fmean((result["runs"][1].per_s,
                                              *((repeats[engine].per_s,) if repeats else ())))
                    for engine, result in engines.items()}
    for engine, run in repeats.items():
        print(f"ours/{engine:7} c=1 again: {run.per_s:5.2f} images/s  p50 {run.percentile(50):6.0f} ms")
    headlines = [f"overhead: {ours['runs'][1].percentile(50) / direct.percentile(50):.2f}x"]
    if original:
        headlines += [
            ratio(1),
            f"lazy vs original: {original['lazy'].percentile(50) / ours['lazy'].percentile(50):.1f}x",
            f"memory ours/original: {ours['memory_gb']:.2f}/{original['memory_gb']:.2f} GB "
            f"({ours['memory_gb'] / original['memory_gb']:.1f}x)",
            *(ratio(c) for c in sorted(concurrency, reverse=True) if c != 1),
            f"cer ours/original: {cer(ours):.3f}/{cer(original):.3f}",
        ]
    else:
        headlines.append(f"cer ours: {cer(ours):.3f} (the original not measured)")
    headlines.append(f"onnx craft vs torch: {engine_per_s['onnx'] / engine_per_s['torch']:.2f}x")
    out = options.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    shown = config.relative_to(ROOT) if config.is_relative_to(ROOT) else config
    command = f".venv/bin/python bench/baseline.py --config {shown}" + (" --tiny" if options.tiny else "")
    write_results(out, command, {**models, "config": shown}, direct, ours, engines, repeats, original, headlines,
                  images)
    plot(out, direct, ours, original)
    print(f"wrote {out / 'RESULTS.md'} (its baseline section) and {out / 'results.png'}")
    print("\n".join(headlines))


if __name__ == "__main__":
    main()
