"""Requests per second and errors through the loss of a worker node, on a real multi-node Ray cluster
on this machine (tools/local_cluster.py: a head, node_a and node_b, configs/cluster.yaml deployed with
`serve deploy`, PostgreSQL as the store), under steady load from several clients sending new pages
and texts (tests/support/cluster_load.py). node_b is SIGKILLed (its raylet, replicas and agents) at --kill-at
seconds and started again at --rejoin-at.

Writes bench/node_loss.csv (per second: answers, errors by kind, the slowest answer, running replicas
per deployment) and bench/node_loss.png (`--out` for another folder), and prints what the reader of the
README sees. `run` does the same on a cluster already there: the multi-node tests run it on theirs,
at the size of `--tiny` (tests/cluster/test_multinode.py).

    .venv/bin/python bench/node_loss.py [--tiny]
"""

import argparse
import csv
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))

import httpx  # noqa: E402
from local_cluster import LocalCluster, start_three_nodes  # noqa: E402

from bench.common import BENCH  # noqa: E402
from tests.support.cluster_load import SteadyLoad  # noqa: E402
from tests.support.postgres import PostgresServer  # noqa: E402

TOKEN = "bench-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
MODELS = {"box_model_id": "rapidocr/ppocr-v4-det", "ocr_model_id": "tesseract/eng", "tsl_model_id": "apertium/eng-spa"}
DEPLOYMENTS = ("Ingress", "BoxDetector", "OCRReader", "Translator")


def running(cluster: LocalCluster) -> dict[str, int]:
    details = cluster.dashboard("/api/serve/applications/")
    deployments = details["applications"]["ocr_translate"]["deployments"]
    return {name: sum(r["state"] == "RUNNING" for r in deployments[name]["replicas"]) for name in DEPLOYMENTS}


TINY = {"clients": 2, "kill_at": 4.0, "rejoin_at": 14.0, "duration": 22.0}
"""`--tiny`'s schedule (the test suite's): seconds, and the clients of the load."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--kill-at", type=float, default=20)
    parser.add_argument("--rejoin-at", type=float, default=60)
    parser.add_argument("--duration", type=float, default=90)
    parser.add_argument("--tiny", action="store_true", help=f"the test suite's size: {TINY}")
    parser.add_argument("--out", type=Path, default=BENCH, help="folder of node_loss.csv and .png (bench/)")
    options = parser.parse_args()
    if options.tiny:
        vars(options).update(TINY)

    database = PostgresServer()
    try:
        cluster = start_three_nodes(Path(tempfile.mkdtemp(prefix="ocr-bench-")), database.new_database(), TOKEN)
        try:
            with httpx.Client(base_url=cluster.url, headers=AUTH, timeout=300) as http:
                http.post("/set_lang/", json={"lang_src": "en", "lang_dst": "es"}).raise_for_status()
                http.post("/set_models/", json=MODELS).raise_for_status()
            run(cluster, AUTH, options.out, options.clients, options.kill_at, options.rejoin_at, options.duration)
        finally:
            cluster.stop()
    finally:
        database.stop()


def run(cluster: LocalCluster, auth: dict[str, str], out: Path, clients: int, kill_at: float, rejoin_at: float,
        duration: float, tag: str = "bench") -> SteadyLoad:
    """On a running three-node cluster whose selection reads pages: the load of `clients`, node_b killed
    at `kill_at` s and started again at `rejoin_at` s, until `duration` s; writes out/node_loss.csv and
    .png and prints the summary. The load, with every answer."""
    replicas: dict[int, dict[str, int]] = {}
    stop = threading.Event()
    with SteadyLoad(cluster.url, auth, tag, clients=clients) as load:
        def watch() -> None:
            while not stop.is_set():
                second = int(load.now())
                replicas[second] = running(cluster)
                time.sleep(max(0.0, second + 1 - load.now()))

        def until(second: float) -> None:
            time.sleep(max(0.0, second - load.now()))

        watcher = threading.Thread(target=watch)
        watcher.start()
        until(kill_at)
        cluster.kill_worker("node_b")
        until(rejoin_at)
        cluster.rejoin("node_b")
        until(duration)
        stop.set()
        watcher.join()
    rows = per_second(load, replicas, int(duration))
    out.mkdir(parents=True, exist_ok=True)
    write(rows, kill_at, rejoin_at, out)
    summarize(load, rows, kill_at)
    return load


def per_second(load: SteadyLoad, replicas: dict[int, dict[str, int]], seconds: int) -> list[dict]:
    """Answers by the second they arrived in."""
    rows = []
    last = {name: 0 for name in DEPLOYMENTS}
    for second in range(seconds):
        arrived = [a for a in load.answers if second <= a.started + a.seconds < second + 1]
        last = replicas.get(second, last)
        rows.append({"t_s": second, "answered": sum(a.status == 200 for a in arrived),
                     "errors_503": sum(a.status == 503 for a in arrived),
                     "errors_other": sum(a.status not in (200, 503) for a in arrived),
                     "slowest_s": round(max((a.seconds for a in arrived), default=0), 2),
                     **{f"{name}_replicas": last[name] for name in DEPLOYMENTS}})
    return rows


def write(rows: list[dict], kill_at: float, rejoin_at: float, folder: Path) -> None:
    with (folder / "node_loss.csv").open("w", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    times = [row["t_s"] for row in rows]
    figure, (answers, placed) = plt.subplots(2, 1, figsize=(8, 5), sharex=True, height_ratios=[3, 2])
    answers.bar(times, [row["answered"] for row in rows], width=1, align="edge", color="tab:green", label="answered")
    answers.bar(times, [row["errors_503"] for row in rows], width=1, align="edge", color="tab:orange",
                bottom=[row["answered"] for row in rows], label="503 + Retry-After")
    answers.bar(times, [row["errors_other"] for row in rows], width=1, align="edge", color="tab:red",
                bottom=[row["answered"] + row["errors_503"] for row in rows], label="other errors")
    answers.set(ylabel="requests / s", title="Steady load through the loss of node_b (3-node Ray cluster, 2 cores)")
    for axes in (answers, placed):
        axes.axvline(kill_at, color="black", linestyle="--")
        axes.axvline(rejoin_at, color="grey", linestyle="--")
    answers.text(kill_at, answers.get_ylim()[1] * 0.95, " node_b killed", va="top")
    answers.text(rejoin_at, answers.get_ylim()[1] * 0.95, " node_b rejoins", va="top")
    answers.legend(loc="lower right")
    for name in DEPLOYMENTS:
        placed.step(times, [row[f"{name}_replicas"] for row in rows], where="post", label=name)
    placed.set(xlabel="seconds", ylabel="running replicas")
    placed.legend(loc="lower right", ncols=4, fontsize="small")
    figure.tight_layout()
    figure.savefig(folder / "node_loss.png", dpi=100)


def summarize(load: SteadyLoad, rows: list[dict], kill_at: float) -> None:
    before = [row["answered"] for row in rows if row["t_s"] < kill_at]
    ended = [a.started + a.seconds for a in load.failed()] or [kill_at]
    print(f"{len(load.answers)} requests: {dict(Counter(a.status for a in load.answers))}; "
          f"{sum(before) / len(before):.1f} answered/s before the loss; errors from {min(ended):.1f} s to "
          f"{max(ended):.1f} s (node_b killed at {kill_at:g} s); the slowest request "
          f"{max(a.seconds for a in load.answers):.1f} s")


if __name__ == "__main__":
    main()
