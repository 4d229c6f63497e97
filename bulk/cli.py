"""`ocr-translate-bulk`: find, read and translate every image of folders, globs, files or a table of
paths on Ray Data, with the server's models and stage code; results to Parquet, optionally into the
server's store (then the extension's md5-only call answers those pages at once).

Each model stage is an actor pool placed like the matching deployment of the Serve config
(`ray_actor_options` num_cpus/num_gpus, replicas as the pool size, the args' threads and
max_batch_size), so one config describes the cluster's shares for both the server and bulk runs.
"""

import argparse
import glob
import json
import math
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from core.settings import AppArgs
    from models_registry import Registry
    from service.jobs import Job
    from service.store import Store

    from .output import JobColumns

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".gif", ".webp")
ROOT = Path(__file__).resolve().parent.parent
FILES_PER_BLOCK = 16


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="ocr-translate-bulk", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("inputs", nargs="+", metavar="INPUT",
                        help="folders (searched recursively), globs, image files, or .parquet/.csv files with a "
                             "`path` column; URIs Ray Data reads (s3://...) pass through")
    parser.add_argument("--src", help="language of the pages (ISO 639, as the extension sends it; default: the "
                                      "--profile's)")
    parser.add_argument("--dst", help="language to translate to (default: the --profile's)")
    parser.add_argument("--profile", metavar="NAME",
                        help="a reader profile of the server's store (--store's, else the config's): its languages "
                             "and models instead of the config's default_selection, and its glossary")
    parser.add_argument("--box", help="box model id (default: the profile's, else the config's default_selection)")
    parser.add_argument("--ocr", help="OCR model id (default: the profile's, else the config's default_selection)")
    parser.add_argument("--tsl", help="translation model id (default: the profile's, else the config's "
                                      "default_selection)")
    parser.add_argument("--options", type=json.loads, default=None,
                        help='options per model id, as the extension sends them: \'{"tesseract/spa": {"psm": 6}}\'')
    parser.add_argument("--out", type=Path, required=True, help="the Parquet file of results")
    parser.add_argument("--render", type=Path, help="write each page with its translations drawn over it here")
    parser.add_argument("--config", type=Path, default=ROOT / "configs" / "local.yaml",
                        help="Serve config whose args (models, data folder) and deployments (shares) to use")
    parser.add_argument("--store", nargs="?", const="", default=None, metavar="DATABASE_URL",
                        help="also write every result to the server's store (without a URL: the config's), "
                             "and skip images it already holds")
    parser.add_argument("--flush-every", type=int, default=64, help="rows per part written while the run goes")
    parser.add_argument("--address", default=None, help="Ray cluster to run on (default: a local one, or "
                        "the one `ray job submit` runs this in)")
    options = parser.parse_args(argv)
    if options.profile is None and not (options.src and options.dst):
        parser.error("--src and --dst are required without --profile")
    return options


def expand(inputs: list[str]) -> list[str]:
    """Every image path the inputs name, in a stable order; URIs are left to Ray Data."""
    import pyarrow.csv
    import pyarrow.parquet

    paths: list[str] = []
    for item in inputs:
        path = Path(item)
        if "://" in item:
            paths.append(item)
        elif path.is_dir():
            paths += sorted(str(p) for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        elif path.suffix.lower() in (".parquet", ".csv") and path.is_file():
            table = (pyarrow.parquet.read_table(path, columns=["path"]) if path.suffix.lower() == ".parquet"
                     else pyarrow.csv.read_csv(path).select(["path"]))
            paths += [str(p) for p in table.column("path").to_pylist()]
        elif path.is_file():
            paths.append(str(path))
        else:
            found = sorted(glob.glob(item, recursive=True))
            if not found:
                raise SystemExit(f"ocr-translate-bulk: {item!r} is no folder, file or glob that matches anything")
            paths += [p for p in found if Path(p).is_file()]
    return list(dict.fromkeys(paths))


def stage_options(options: dict[str, dict[str, Any]], deployment: str) -> dict[str, Any]:
    """Ray Data map_batches placement of a model stage from the config's deployment of the same model kind."""
    import ray.data

    placed = options.get(deployment, {})
    actor = placed.get("ray_actor_options", {})
    autoscaling = placed.get("autoscaling_config") or {}
    replicas = placed.get("num_replicas")
    if isinstance(replicas, int):
        pool = ray.data.ActorPoolStrategy(size=replicas)
    elif autoscaling:
        pool = ray.data.ActorPoolStrategy(min_size=autoscaling.get("min_replicas") or 1,
                                          max_size=autoscaling.get("max_replicas", 1))
    else:
        pool = ray.data.ActorPoolStrategy(size=1)
    placement = {"num_cpus": actor.get("num_cpus", 1), "num_gpus": actor.get("num_gpus", 0), "compute": pool}
    # the nodes that have the model's software (custom resources such as `tesseract`), and its memory
    placement.update({key: actor[key] for key in ("resources", "memory") if key in actor})
    return placement


def resolve_job(options: argparse.Namespace, args: "AppArgs", store: "Store", registry: "Registry",
                ) -> tuple["Job", "JobColumns"]:
    """The job and its output columns, resolved exactly as the server resolves a request naming its models
    (same checks, same option defaults and cache keys): from the config's default selection, or with
    --profile from that reader's selection and glossary (the glossary is part of the translations'
    key), what the command names replacing either. A SystemExit saying why when it cannot run."""
    from core.slots import ModelSlots
    from service.catalogue import Catalogue
    from service.jobs import Jobs, Overrides
    from service.store import DEFAULT_PROFILE

    from . import output

    named = ModelSlots(box=options.box, ocr=options.ocr, tsl=options.tsl)
    profile, models = DEFAULT_PROFILE, named.or_(args.default_selection.models)
    if options.profile is not None:
        found = store.profile_named(options.profile)
        if found is None:
            raise SystemExit(f"ocr-translate-bulk: no reader profile is named {options.profile!r} in "
                             f"{store.engine.url.render_as_string(hide_password=True)}")
        profile, models = found.id, named  # what it leaves unnamed is the profile's selection
    overrides = Overrides(lang_src=options.src, lang_dst=options.dst, models=models, any_model=True, profile=profile)
    try:
        job = Jobs(store, Catalogue(store, registry, None), args.limits).resolve(overrides, options.options,
                                                                                  need_ocr=True)
        return job, output.JobColumns.of(job)  # a bulk run translates from one source language
    except Exception as exc:  # noqa: BLE001 - the server's clear messages, as a command's error
        raise SystemExit(f"ocr-translate-bulk: {exc}") from None


def vertical_of(job: "Job") -> tuple[str, dict[str, Any]] | None:
    """The model that reads the job's vertical blocks, and its options, as the server's pipeline uses it."""
    vertical = job.ocr_vertical
    return None if vertical is None else (vertical.entry.id, vertical.options)


def main(argv: list[str] | None = None) -> None:
    options = parse(argv)
    import ray

    import graph
    from core.settings import AppArgs
    from core.slots import KINDS
    from models_registry import Registry
    from service.store import Store

    from . import output, stages

    raw_args, deployments = graph.read_config(options.config)
    args = AppArgs.model_validate(raw_args)
    registry = Registry.load(args.registry_dirs, args.weight_sources, args.model_settings)
    server_store = options.store or args.resolved_database_url
    database_url = server_store if options.store is not None else None
    with tempfile.TemporaryDirectory(prefix="ocr-bulk-") as scratch:
        # The server's store with --store (results go there) or --profile (the reader's settings are there);
        # else an empty store of its own to resolve the job against.
        store = Store(server_store if database_url or options.profile else f"sqlite:///{scratch}/job.sqlite3")
        job, columns = resolve_job(options, args, store, registry)
        done = output.finished(options.out, columns)
        paths = expand(options.inputs)
        print(f"{len(paths)} images; {len(done)} results of this job already in {options.out}", flush=True)

        ray.init(address=options.address, logging_level="WARNING", log_to_driver=False)
        started = time.perf_counter()
        # Blocks of FILES_PER_BLOCK files: few enough tasks that Ray Data's per-task cost stays small
        # beside the models', small enough that results stream out (and are written) block by block.
        data = ray.data.read_binary_files(paths, include_paths=True,
                                          override_num_blocks=max(1, math.ceil(len(paths) / FILES_PER_BLOCK)),
                                          ray_remote_args={"num_cpus": 0.1})
        data = data.map_batches(stages.Decode, fn_constructor_args=(args.limits.max_image_pixels, frozenset(done),
                                                                    database_url, job),
                                compute=ray.data.ActorPoolStrategy(size=1), num_cpus=0.1,
                                batch_size=FILES_PER_BLOCK, batch_format="numpy")
        for stage_class, deployment, settings in ((stages.DetectStage, "BoxDetector", args.box_detector),
                                                  (stages.ReadStage, "OCRReader", args.ocr_reader),
                                                  (stages.TranslateStage, "Translator", args.translator)):
            stage = job.stages.get(stage_class.kind)
            built_with, batching = settings.split()
            data = data.map_batches(
                stage_class, fn_constructor_args=(args, built_with, stages.StageJob(
                    stage.entry.id, job.src, job.dst, stage.options, job.route.glossary,
                    vertical_of(job) if stage_class.kind == "ocr" else None)),
                batch_size=max(batching.max_batch_size, 1), batch_format="numpy",
                **stage_options(deployments, deployment))

        summary = {"images": 0, "skipped": 0, "failed": 0, "blocks": 0}
        seconds = dict.fromkeys(KINDS, 0.0)
        for batch in data.iter_batches(batch_size=options.flush_every, batch_format="numpy"):
            rows = output.rows_of(batch, columns)
            for index, (row, result) in enumerate(rows):
                summary["images"] += 1
                summary["failed"] += row["error"] is not None
                summary["blocks"] += len(row["blocks"])
                for kind in seconds:
                    seconds[kind] += float(batch[f"seconds_{kind}"][index])
                if result is not None:
                    if database_url:
                        output.save_to_store(store, job, row["md5"], result)
                    if options.render:
                        output.render(row["path"], row["blocks"], options.render / f"{row['md5']}.png")
            output.write_part(options.out, [row for row, _ in rows])
            print(f"{time.strftime('%H:%M:%S')} {summary['images']} images done", flush=True)
        elapsed = time.perf_counter() - started
        summary["skipped"] = len(paths) - summary["images"]
        summary["rows"] = output.merge(options.out)
        summary["images_per_s"] = round(summary["images"] / elapsed, 2) if summary["images"] else 0.0
        summary["seconds"] = round(elapsed, 2)
        # Each stage's own pace: images per second of its model calls, per actor.
        read = summary["images"] - summary["failed"]
        summary["stage_images_per_s"] = {kind: round(read / total, 2) if total else None
                                         for kind, total in seconds.items()}
        store.close()
    print(json.dumps(summary), flush=True)
    sys.exit(0)
