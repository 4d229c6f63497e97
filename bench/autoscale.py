"""Autoscaling under load, on a local Ray cluster: replica counts over time while callers come and go.

Runs the app of configs/local.yaml with the Translator's autoscaling tuned to show itself within a
couple of minutes (1 to 2 replicas, a low target, short delays), sends `run_tsl` calls of distinct
texts from many callers for a while, then stops and waits. Every second it records each
deployment's running replicas from Serve's status and the requests answered. Writes
bench/autoscale.csv and bench/autoscale.png (`--out` for another folder) and prints when the Translator
scaled up and down.

    .venv/bin/python bench/autoscale.py [--load-s 60] [--callers 24] [--tiny]

`--tiny` (the test suite's run): 2 callers for 4 s, watched 2 s more: too short to scale.
"""

import argparse
import concurrent.futures
import csv
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx  # noqa: E402

from bench.common import BENCH, ROOT, free_port, own_ray  # noqa: E402

WATCHED = "Translator"
AUTOSCALING = {"min_replicas": 1, "max_replicas": 2, "target_ongoing_requests": 2,
               "upscale_delay_s": 3, "downscale_delay_s": 15, "look_back_period_s": 5}


def running_replicas(app: str) -> dict[str, int]:
    from ray import serve
    from ray.serve._private.common import ReplicaState  # the state names Serve reports

    deployments = serve.status().applications[app].deployments
    return {name: status.replica_states.get(ReplicaState.RUNNING, 0) for name, status in deployments.items()}


def drive(url: str, callers: int, stop: threading.Event, answered: list[int]) -> None:
    """`callers` loops of run_tsl with texts never sent before, until `stop`."""
    def caller(number: int) -> None:
        with httpx.Client(base_url=url, timeout=120) as client:
            sent = 0
            while not stop.is_set():
                sent += 1
                text = f"Caller {number} asks question number {sent} about the weather today."
                if client.post("/run_tsl/", json={"text": text}).status_code == 200:
                    answered[0] += 1

    with concurrent.futures.ThreadPoolExecutor(callers) as pool:
        list(pool.map(caller, range(callers)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--load-s", type=float, default=60)
    parser.add_argument("--after-s", type=float, default=75, help="how long to watch after the load stops")
    parser.add_argument("--callers", type=int, default=24)
    parser.add_argument("--config", type=Path, default=ROOT / "configs" / "local.yaml",
                        help="Serve config (configs/gpu.yaml on a GPU machine)")
    parser.add_argument("--tiny", action="store_true", help="the test suite's run (above)")
    parser.add_argument("--out", type=Path, default=BENCH, help="folder of autoscale.csv and .png (bench/)")
    options = parser.parse_args()
    if options.tiny:
        options.load_s, options.after_s, options.callers = 4, 2, 2
    own_ray()

    import ray
    from ray import serve

    import graph

    port = free_port()
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    rows = []
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        with tempfile.TemporaryDirectory(prefix="ocr-autoscale-") as folder:
            tuned = {WATCHED: {"autoscaling_config": AUTOSCALING, "max_ongoing_requests": 8}}
            serve.run(graph.app_from_config(options.config, tuned, data_dir=folder), name="ocr_translate",
                      route_prefix="/")
            url = f"http://127.0.0.1:{port}"
            with httpx.Client(base_url=url, timeout=120) as client:
                client.post("/set_lang/", json={"lang_src": "en", "lang_dst": "es"}).raise_for_status()
                client.post("/set_models/", json={"tsl_model_id": "apertium/eng-spa"}).raise_for_status()
            stop, answered = threading.Event(), [0]
            load = threading.Thread(target=drive, args=(url, options.callers, stop, answered))
            started = time.monotonic()
            load.start()
            while (elapsed := time.monotonic() - started) < options.load_s + options.after_s:
                if elapsed >= options.load_s and not stop.is_set():
                    stop.set()
                replicas = running_replicas("ocr_translate")
                rows.append({"t_s": round(elapsed, 1), "load": int(not stop.is_set()), "answered": answered[0],
                             **{f"{name}_replicas": count for name, count in sorted(replicas.items())}})
                print(rows[-1], flush=True)
                time.sleep(1)
            load.join()
    finally:
        serve.shutdown()
        ray.shutdown()
    options.out.mkdir(parents=True, exist_ok=True)
    write(rows, options.out)
    counts = [row[f"{WATCHED}_replicas"] for row in rows]
    top = max(counts)
    up = next(row["t_s"] for row in rows if row[f"{WATCHED}_replicas"] == top)
    down = next((row["t_s"] for row in rows if row["t_s"] > up and row[f"{WATCHED}_replicas"] < top), None)
    after = f", back to {counts[-1]} at {down} s" if down else ", no scale-down"
    print(f"{WATCHED}: {counts[0]} replica(s) at start, {top} from {up} s under load{after} "
          f"(load stopped at {options.load_s:.0f} s)")


def write(rows: list[dict], folder: Path) -> None:
    with (folder / "autoscale.csv").open("w", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(8, 3.5))
    times = [row["t_s"] for row in rows]
    for name in (key for key in rows[0] if key.endswith("_replicas")):
        axes.step(times, [row[name] for row in rows], where="post", label=name.removesuffix("_replicas"))
    load_end = next((row["t_s"] for row in rows if not row["load"]), times[-1])
    axes.axvspan(0, load_end, color="orange", alpha=0.15, label="load")
    axes.set(xlabel="seconds", ylabel="running replicas", title="Replicas under load (local cluster, 2 cores)",
             yticks=range(0, max(row[key] for row in rows for key in row if key.endswith("_replicas")) + 2))
    axes.legend(loc="upper right")
    figure.tight_layout()
    figure.savefig(folder / "autoscale.png", dpi=100)


if __name__ == "__main__":
    main()
