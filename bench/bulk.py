"""Bulk on Ray Data vs the server: the same distinct images, the same models, side by side in one run.

First the Serve app of `--config` (its default pipeline, a real translator) answers every image over
HTTP from `--concurrency` callers, as readers' browsers would send a page, after a warm-up image (its
models loaded). Then `ocr-translate-bulk` reads the same images from a folder, and a few others in a
second, short run: the difference of the two runs is the bulk rate with its fixed start-up (a Ray
cluster, model loading in each stage's actors) left out, as the server's warm rate leaves out its own.
One after the other, never sharing the CPU. Last line: `bulk vs server: N.Nx` (images/s ratio).

    .venv/bin/python bench/bulk.py [--images 64] [--concurrency 8] [--config configs/local.yaml] [--tiny]

`--tiny` (the test suite's run): 2 images, one caller, a short run of one image.
"""

import argparse
import base64
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.baseline import bench_image, default_models, http_load  # noqa: E402
from bench.common import BENCH, ROOT, free_port, own_ray  # noqa: E402

SHORT_RUN = 8
"""Images of the short bulk run, whose time is the start-up the long run's rate leaves out."""


def serve_rate(config: Path, models: dict[str, str], images, concurrency: int, folder: Path) -> float:
    import httpx
    import ray
    from ray import serve

    import graph

    port = free_port()
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        serve.run(graph.app_from_config(config, data_dir=str(folder)), name="ocr_translate", route_prefix="/")
        url = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=url, timeout=600) as client:
            client.post("/set_lang/", json={"lang_src": "en", "lang_dst": "es"}).raise_for_status()
            client.post("/set_models/", json=models).raise_for_status()
        http_load(url, [bench_image(0)], 1)  # models loaded and warm
        return http_load(url, images, concurrency).per_s
    finally:
        serve.shutdown()
        ray.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, default=ROOT / "configs" / "local.yaml")
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--short-run", type=int, default=SHORT_RUN, help="images of the short bulk run")
    parser.add_argument("--tiny", action="store_true", help="the test suite's run (above); its figures mean nothing")
    parser.add_argument("--out", type=Path, default=BENCH, help="unused: it writes no file")
    options = parser.parse_args()
    if options.tiny:
        options.images, options.concurrency, options.short_run = 2, 1, 1
    if not 0 < options.short_run < options.images:
        parser.error("the short run has fewer images than the long one, and at least one")
    own_ray()
    config = options.config.resolve()
    chosen = default_models(config)
    models = {**chosen, "tsl_model_id": "apertium/eng-spa"}
    images = [bench_image(1000 + index) for index in range(options.images)]
    with tempfile.TemporaryDirectory(prefix="ocr-bulk-bench-") as scratch:
        work = Path(scratch)
        print(f"server: {len(images)} images at concurrency {options.concurrency}", flush=True)
        server = serve_rate(config, models, images, options.concurrency, work / "server")
        runs = {count: bulk_run(config, models, images[:count], work / f"bulk-{count}") for count in
                (options.short_run, len(images))}
    print(f"server c={options.concurrency}: {server:.2f} images/s (warm)")
    for count, summary in runs.items():
        print(f"bulk, {count} images: {summary['seconds']:.1f} s in all ({summary['images_per_s']:.2f} images/s, "
              f"start-up included)")
    (short, short_run), (many, long_run) = runs.items()
    extra_s = long_run["seconds"] - short_run["seconds"]
    if extra_s <= 0:  # a tiny run's few images: the start-up's noise is larger than their work
        print(f"bulk: the {many}-image run took no longer than the {short}-image one: too few images for a rate")
        print("bulk vs server: not measured")
        return
    bulk = (many - short) / extra_s
    print(f"bulk: {bulk:.2f} images/s beyond its start-up ({many - short} more images)")
    print(f"bulk vs server: {bulk / server:.1f}x")


def bulk_run(config: Path, models: dict[str, str], images, folder: Path) -> dict:
    """`ocr-translate-bulk` on a folder of these images; its summary."""
    pages = folder / "pages"
    pages.mkdir(parents=True)
    for index, image in enumerate(images):
        (pages / f"{index:03}.png").write_bytes(base64.b64decode(image.contents))
    print(f"bulk: {len(images)} images from a folder", flush=True)
    done = subprocess.run(
        [sys.executable, "-m", "bulk", str(pages), "--src", "en", "--dst", "es", "--box", models["box_model_id"],
         "--ocr", models["ocr_model_id"], "--tsl", models["tsl_model_id"], "--out", str(folder / "out.parquet"),
         "--config", str(config)],
        cwd=ROOT, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(done.stderr[-3000:])
    # Its summary line: Ray's processes may print lines of their own after it.
    summaries = [json.loads(line) for line in done.stdout.splitlines() if line.startswith('{"images"')]
    if not summaries:
        raise SystemExit(f"the bulk run printed no summary:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    summary = summaries[-1]
    if summary["failed"]:
        raise SystemExit(f"bulk run failed on {summary['failed']} images: {summary}")
    return summary


if __name__ == "__main__":
    main()
