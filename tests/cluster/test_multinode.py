"""A real multi-node Ray cluster on this machine (tools/local_cluster.py): a head without model
resources, node_a declaring Tesseract and Apertium, node_b only Apertium; configs/cluster.yaml deployed
with `serve deploy` as an operator does (paths, ports and the one proxy changed for one machine), a
PostgreSQL server of its own as the shared store, a real Prometheus (Debian's) scraping every node.

The tests run in the order written, on one cluster: placement, a page across the nodes, a bulk run
submitted as a Ray job, metrics through PromQL, then the faults, each under steady load from four
clients (tests/support/cluster_load.py): PostgreSQL restarted, node_b lost, node_b rejoining, the
node-loss benchmark (bench/node_loss.py) at its tiny size, a changed config deployed, node_b drained
and stopped. No fixed sleep stands before a check: each waits for the answers, or the state, it checks.
"""

import csv
import json
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

import httpx
import pyarrow.parquet as pq
import pytest
import yaml
from sqlalchemy import create_engine, func, select

from deployments.proxy_errors import INGRESS_LOST
from service.coalescing import CLAIM_LEASE_S
from service.store import Store, TextRow, TranslationRunRow, WorkClaimRow
from tests.support.cluster_load import HUNG, Answer, SteadyLoad, sign
from tests.support.images import encode, render, write_pages
from tests.support.paths import ROOT
from tests.support.postgres import PostgresServer
from tests.support.prometheus import PrometheusServer
from tests.support.waiting import wait_for

sys.path.insert(0, str(ROOT / "tools"))
from local_cluster import LocalCluster, start_three_nodes  # noqa: E402

TOKEN = "multinode-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
MODELS = {"box_model_id": "rapidocr/ppocr-v4-det", "ocr_model_id": "tesseract/eng", "tsl_model_id": "apertium/eng-spa"}
REQUEST_TIMEOUT_S = yaml.safe_load((ROOT / "configs" / "cluster.yaml").read_text())[
    "http_options"]["request_timeout_s"]
"""How long Serve's proxy lets a request run: no request may wait longer."""
REPLACED = "A model replica stopped and is being replaced; try again in a few seconds."
STORE_DOWN = "The server's database is unavailable; try again in a few seconds."
DRAIN_DEADLINE_S = 60
"""When node_b is to be gone, as Ray is told when it drains: Serve stops what cannot move before then."""


@pytest.fixture(scope="module")
def database(postgres):
    """A PostgreSQL server of this module's own: one test restarts it."""
    server = PostgresServer()
    server.url_of_store = server.new_database()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def cluster(database):
    cluster = start_three_nodes(Path(tempfile.mkdtemp(prefix="ocr-mn-")), database.url_of_store, TOKEN)
    with httpx.Client(base_url=cluster.url, headers=AUTH, timeout=300) as http:
        assert http.post("/set_lang/", json={"lang_src": "en", "lang_dst": "es"}).status_code == 200
        response = http.post("/set_models/", json=MODELS)
        assert response.status_code == 200, response.text
    yield cluster
    cluster.stop()


def serve_replicas(cluster: LocalCluster, state: str | None = "RUNNING") -> dict[str, list[dict]]:
    """Per deployment, its replicas in `state` (None: all) as Serve's REST API (the dashboard's) reports them."""
    details = cluster.dashboard("/api/serve/applications/")
    deployments = details["applications"]["ocr_translate"]["deployments"]
    return {name: [r for r in deployment["replicas"] if state in (None, r["state"])]
            for name, deployment in deployments.items()}


def placement(cluster: LocalCluster) -> dict[str, list[str]]:
    """Per deployment, the names of the nodes its running replicas are on."""
    names = {node_id: name for name, node_id in cluster.node_ids().items()}
    return {deployment: sorted(names.get(r["node_id"], "lost") for r in running)
            for deployment, running in serve_replicas(cluster).items()}


def runs_only_on(cluster: LocalCluster, *nodes: str) -> bool:
    """Whether every deployment has running replicas, all on `nodes`."""
    on = placement(cluster)
    return all(on.values()) and set().union(*on.values()) <= set(nodes)




def answered_after(load: SteadyLoad, since_s: float, count: int = 8, timeout_s: float = 120) -> None:
    """Wait until `count` requests the load sent `since_s` seconds into it or later have their answers:
    what the checks after it read of how the server answers from then on (a fixed sleep gave as many
    answers as this machine's load of the day allowed)."""
    wait_for(lambda: sum(answer.started >= since_s for answer in load.answers) >= count, timeout_s,
             f"{count} answers to requests sent from {since_s:.1f} s into the load")


HELD_REQUESTS = """
import sys, time
import ray

address, timeout_s, names = sys.argv[1], float(sys.argv[2]), sys.argv[3:]
ray.init(address=address, logging_level="ERROR", log_to_driver=False)
replicas = [ray.get_actor(name, namespace="serve") for name in names]
started, held = time.monotonic(), 0
while time.monotonic() - started < timeout_s:
    held = sum(ray.get([replica.get_num_ongoing_requests.remote() for replica in replicas], timeout=10))
    if held >= 2 or (held and time.monotonic() - started > timeout_s / 2):
        break
    held = 0
    time.sleep(0.05)
print(held, flush=True)
"""
"""A driver of the cluster's own: polls Serve's count of ongoing requests of the replicas named (it
answers beside the replica's work, as tests/faults/test_faults.py reads it) and prints how many they
hold, once two or more (or one, after half the time), else 0."""


def kill_while_holding_requests(cluster: LocalCluster, name: str, timeout_s: float = 60) -> int:
    """SIGKILL the worker `name` (cluster.kill_worker) at a moment its replicas hold requests in flight, so
    some die with it (a request lasts about a second under the load); how many they held."""
    node_id = cluster.node_ids()[name]
    actors = cluster.dashboard("/api/v0/actors", {"detail": "true", "limit": 10000}, 60)["data"]["result"]["result"]
    replicas = [actor["name"] for actor in actors if actor["node_id"] == node_id and actor["state"] == "ALIVE"
                and (actor["name"] or "").startswith("SERVE_REPLICA::")]
    assert replicas, f"no Serve replica on {name}: {actors}"
    watcher = subprocess.Popen([sys.executable, "-c", HELD_REQUESTS, cluster.address, str(timeout_s), *replicas],
                               env=cluster.env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    held = int(watcher.stdout.readline().strip() or 0)
    if held:
        cluster.kill_worker(name)
    _, errors = watcher.communicate(timeout=60)
    assert held, f"{name}'s replicas {replicas} held no request within {timeout_s:g} s: {errors[-3000:]}"
    return held


def check_answers(load: SteadyLoad, allowed_failures: set[str] = frozenset()) -> None:
    """Nothing hung or outlived the proxy's timeout; every failure is a JSON 503 with Retry-After
    whose message is among `allowed_failures`."""
    assert load.answers, "the load sent nothing"
    assert not [a for a in load.answers if a.status == HUNG or a.seconds >= REQUEST_TIMEOUT_S], "a request hung"
    for answer in load.failed():
        assert answer.status == 503 and answer.retry_after and int(answer.retry_after) >= 1, answer
        assert httpx.Response(503, text=answer.body).json()["error"] in allowed_failures, answer


def check_store(database_url: str, answers: list[Answer]) -> None:
    """Every text an answer translated is stored with one translation, and the store is sound."""
    engine = create_engine(database_url)
    with engine.connect() as connection:
        runs = dict(connection.execute(
            select(TextRow.text, func.count()).join(TranslationRunRow, TranslationRunRow.text_id == TextRow.id)
            .group_by(TextRow.text)).all())
    engine.dispose()
    answered = [text for answer in answers for text in answer.texts()]
    assert answered and all(runs.get(text) == 1 for text in answered), [t for t in answered if runs.get(t) != 1]
    store = Store(database_url)
    assert store.integrity_problems() == []
    store.close()


def test_replicas_are_placed_as_the_config_says(cluster):
    assert set(cluster.node_ids()) == {"head", "node_a", "node_b"}
    on = placement(cluster)
    assert on["Ingress"] == ["node_a", "node_b"]  # min 2, at most one per node: one on each worker
    assert on["OCRReader"] == ["node_a", "node_a"]  # two at least, only where tesseract is declared
    assert set(on["Translator"]) <= {"node_a", "node_b"} and on["Translator"]
    assert all("head" not in names for names in on.values()), on  # the head has no CPUs for replicas

    # /status names each model replica's node as Ray knows it
    status = httpx.get(f"{cluster.url}/status", headers={**AUTH, "Accept": "application/json"}, timeout=60).json()
    replicas = serve_replicas(cluster)
    for name in ("BoxDetector", "OCRReader", "Translator"):
        shown = {replica["node_id"] for replica in status["deployments"][name]["running"]}
        assert shown == {r["node_id"] for r in replicas[name]}, name


def test_a_page_is_read_and_translated_across_the_nodes_into_postgresql(cluster, database):
    with httpx.Client(base_url=cluster.url, headers=AUTH, timeout=300) as http:
        contents, md5 = encode(render([((30, 30), "The house is on the hill.")], size=(600, 100)))
        response = http.post("/run_ocrtsl/", json={"contents": contents, "md5": md5})
        assert response.status_code == 200, response.text
        [block] = response.json()["result"]
        assert block["ocr"] == "The house is on the hill." and "casa" in block["tsl"].lower()
        # the md5-only call, from whichever ingress replica takes it, reads the shared store
        for _ in range(6):
            assert http.post("/run_ocrtsl/", json={"md5": md5}).json()["result"] == [block]
    engine = create_engine(database.url_of_store)
    with engine.connect() as connection:
        assert connection.scalar(select(func.count()).select_from(TranslationRunRow)) == 1
    engine.dispose()


def test_a_bulk_run_submitted_as_a_ray_job_fills_the_clusters_store(cluster, tmp_path):
    """`ray job submit` of ocr-translate-bulk to the cluster with the config it serves: the OCR stage's
    actors run only where `tesseract` is declared (node_a), and the extension's md5-only calls for
    those pages are answered from the shared store."""
    pages = write_pages(tmp_path / "chapter", "en", 70, 3)
    out = tmp_path / "chapter.parquet"
    submitted = subprocess.run(
        [str(Path(sys.executable).parent / "ray"), "job", "submit", "--address", cluster.dashboard_url, "--",
         sys.executable, "-m", "bulk", str(tmp_path / "chapter"), "--src", "en", "--dst", "es",
         "--box", MODELS["box_model_id"], "--ocr", MODELS["ocr_model_id"], "--tsl", MODELS["tsl_model_id"],
         "--config", str(cluster.temp_dir.parent / "cluster.yaml"), "--out", str(out), "--store"],
        env=cluster.env, capture_output=True, text=True, timeout=600)
    assert submitted.returncode == 0, submitted.stdout[-3000:] + submitted.stderr[-2000:]
    [summary] = [json.loads(line) for line in submitted.stdout.splitlines() if line.startswith('{"images"')]
    assert (summary["images"], summary["failed"]) == (3, 0)

    actors = cluster.dashboard("/api/v0/actors", {"detail": "true", "limit": 10000}, 60)["data"]["result"]["result"]
    # where the OCR stage's actors ran (one may never have found room beside Serve's replicas: no node)
    readers = {actor["node_id"] for actor in actors if "ReadStage" in actor["class_name"] and actor["node_id"]}
    assert readers == {cluster.node_ids()["node_a"]}

    found = {Path(row["path"]).name: row for row in pq.read_table(out).to_pylist()}
    with httpx.Client(base_url=cluster.url, headers=AUTH, timeout=REQUEST_TIMEOUT_S) as http:
        for name, md5 in pages.items():
            answer = http.post("/run_ocrtsl/", json={"md5": md5})
            assert answer.status_code == 200, answer.text
            assert [(block["ocr"], block["tsl"]) for block in answer.json()["result"]] == [
                (block["ocr"], block["tsl"]) for block in found[name]["blocks"]]


@pytest.fixture(scope="module")
def prometheus(cluster):
    server = PrometheusServer(cluster.temp_dir / "prom_metrics_service_discovery.json")
    yield server
    server.stop()


def test_prometheus_scrapes_every_node_and_our_metrics_move_with_the_load(cluster, prometheus):
    """A real Prometheus, finding the nodes as Ray documents (the head's service-discovery file): the
    PromQL an operator's dashboard runs (docs/grafana-dashboard.json) follows a load of new pages and
    texts, their lazy repeats, and a burst past one client's share."""
    ports = {name: node.metrics_port for name, node in cluster.nodes.items()}
    wait_for(lambda: {str(port) for port in ports.values()} <= {
        target.rsplit(":", 1)[1] for target in prometheus.up_targets()}, 60, "every node scraped")
    queries = {
        "ocr_stages": 'sum(ray_ocr_serve_stage_seconds_count{stage="ocr"})',
        "hits": 'sum(ray_ocr_serve_cache_lookups_total{result="hit"})',
        "lookups": "sum(ray_ocr_serve_cache_lookups_total)",
        "batches": "sum(ray_ocr_serve_batch_size_count)",
        # Ray exports a histogram's _sum from bucket midpoints (an item alone counts 0.5): the buckets tell
        "batches_of_one": 'sum(ray_ocr_serve_batch_size_bucket{le=~"1(\\\\.0)?"})',
        "rejected": 'sum(ray_ocr_serve_rejected_requests_total{reason="client_in_flight"})',
    }
    before = {name: prometheus.value(query) for name, query in queries.items()}

    with SteadyLoad(cluster.url, AUTH, "metrics") as load:
        wait_for(lambda: sum(a.status == 200 and a.sent.startswith("Sign") for a in load.answers) >= 6, 120,
                 "six pages read")
    check_answers(load)
    pages = [answer for answer in load.answers if answer.sent.startswith("Sign")]
    with httpx.Client(base_url=cluster.url, headers=AUTH, timeout=REQUEST_TIMEOUT_S) as http:
        for answer in pages:  # the extension's first, lazy call for an image read before: a stored answer
            contents, md5 = sign(answer.sent)
            assert http.post("/run_ocrtsl/", json={"md5": md5}).status_code == 200
    images = [sign(f"Burst sign {n}") for n in range(64)]
    with httpx.Client(base_url=cluster.url, headers=AUTH, timeout=REQUEST_TIMEOUT_S,
                      limits=httpx.Limits(max_connections=64)) as http, ThreadPoolExecutor(64) as pool:
        burst = list(pool.map(lambda image: http.post("/run_ocrtsl/", json={"contents": image[0], "md5": image[1]}),
                              images))
    rejected = [r for r in burst if r.status_code == 503 and r.json()["error"].startswith("You have")]
    assert rejected and all(r.status_code in (200, 503) for r in burst)  # 64 at once, 16 per client per replica
    read = len(pages) + sum(r.status_code == 200 for r in burst)

    def moved() -> dict[str, float] | None:
        now = {name: prometheus.value(query) - before[name] for name, query in queries.items()}
        done = (now["ocr_stages"] >= read and now["hits"] >= len(pages) and now["rejected"] == len(rejected)
                and now["batches"] > 0)
        return now if done else None

    moved_by = wait_for(moved, 90, "the metrics following the load")  # workers report every few seconds
    assert moved_by["batches"] > moved_by["batches_of_one"]  # concurrent pages' crops were read together
    assert moved_by["hits"] / moved_by["lookups"] > 0  # the cache hit ratio an operator watches
    assert moved_by["rejected"] == len(rejected)  # exactly the 503s the clients saw, no more

    slowest = prometheus.value('histogram_quantile(0.9, sum by (le) (rate(ray_ocr_serve_stage_seconds_bucket'
                               '{stage="ocr"}[5m])))')
    assert 0 < slowest < REQUEST_TIMEOUT_S

    def loaded_per_node() -> dict[str, float] | None:
        """Per node (its metrics port), the models loaded, once a box, an OCR and a translation model
        are reported, wherever they run (each replica reports its own gauge, in its own time)."""
        found = {series["instance"].rsplit(":", 1)[1]: value
                 for series, value in prometheus.query("sum by (instance) (ray_ocr_serve_loaded_models)")}
        return found if sum(found.values()) >= 3 else None

    per_node = wait_for(loaded_per_node, 60, "the loaded models of every model replica")
    assert per_node.get(str(ports["node_a"]), 0) >= 1  # node_a holds the OCR replica and its model
    assert per_node.get(str(ports["head"]), 0) == 0  # the head runs no model replica

    dashboard = json.loads((ROOT / "docs" / "grafana-dashboard.json").read_text())
    for panel in dashboard["panels"]:  # the dashboard we ship: valid PromQL, with data after this load
        for target in panel["targets"]:
            assert prometheus.query(target["expr"]), panel["title"]


def _answered_by_every_replica(cluster: LocalCluster, token: str, status: int, deadline_s: float = 60) -> None:
    """Wait until 20 changes of a setting in a row with `token` are answered `status`: every ingress
    replica (the proxy spreads them) has read the token file as it is now."""
    deadline = time.monotonic() + deadline_s
    with httpx.Client(base_url=cluster.url, timeout=REQUEST_TIMEOUT_S,
                      headers={"Authorization": f"Bearer {token}"}) as http:
        in_a_row = 0
        while in_a_row < 20:
            assert time.monotonic() < deadline, f"the token file's change did not reach every replica ({token})"
            answer = http.post("/set_glossary_term/", json={"term": "probe", "translation": "sonda"})
            in_a_row = in_a_row + 1 if answer.status_code == status else 0


def test_the_api_token_rotates_on_the_running_cluster_and_no_change_is_refused(cluster):
    """docs/security.md's rotation, on every node at once: the new token added beside the old in the token
    file, the client moved to it, the old one removed. A client changing settings all along is never
    refused, and at the end every ingress replica refuses the old token; nothing restarts."""
    new = "multinode-token-rotated"
    using, answers, stop = [TOKEN], [], threading.Event()

    def change_settings() -> None:
        with httpx.Client(base_url=cluster.url, timeout=REQUEST_TIMEOUT_S) as http:
            while not stop.is_set():
                token = using[-1]
                answer = http.post("/set_glossary_term/", json={"term": "rotation", "translation": f"r{len(answers)}"},
                                   headers={"Authorization": f"Bearer {token}"})
                answers.append((token, answer.status_code, answer.text))

    def sent_more(count: int) -> None:
        goal, deadline = len(answers) + count, time.monotonic() + 60
        while len(answers) < goal:
            assert time.monotonic() < deadline
            time.sleep(0.05)

    replicas_before = {r["replica_id"] for r in serve_replicas(cluster)["Ingress"]}
    client = threading.Thread(target=change_settings)
    client.start()
    try:
        sent_more(5)
        cluster.api_tokens.write_text(f"{TOKEN}\n{new}\n")  # 1. the new token beside the old
        _answered_by_every_replica(cluster, new, 200)
        using.append(new)  # 2. the client moves to it
        sent_more(5)
        cluster.api_tokens.write_text(f"{new}\n")  # 3. the old one removed
        _answered_by_every_replica(cluster, TOKEN, 401)
        sent_more(5)
    finally:
        stop.set()
        client.join()
    refused = [(token, status, text) for token, status, text in answers if status != 200]
    assert refused == [] and {token for token, *_ in answers} == {TOKEN, new}, refused
    assert {r["replica_id"] for r in serve_replicas(cluster)["Ingress"]} == replicas_before  # no restart
    cluster.api_tokens.write_text(f"{TOKEN}\n")  # the later tests' token again
    _answered_by_every_replica(cluster, TOKEN, 200)
    with httpx.Client(base_url=cluster.url, headers=AUTH, timeout=60) as http:
        for term in ("rotation", "probe"):
            assert http.post("/delete_glossary_term/", json={"term": term}).status_code == 200


def test_the_store_restarted_under_load_is_reconnected_without_restarting_the_ingress(cluster, database):
    """PostgreSQL stopped for a few seconds (as an operator's restart) while four clients work:
    requests that needed it meanwhile get the JSON 503 with Retry-After, the ingress replicas'
    connection pools reconnect by themselves once it is back, and no replica was replaced."""
    before = {r["replica_id"] for r in serve_replicas(cluster)["Ingress"]}
    with SteadyLoad(cluster.url, AUTH, "restart") as load:
        answered_after(load, 0, 4)
        database.shut_down()
        down_at = load.now()
        wait_for(lambda: [a for a in load.failed() if a.started + a.seconds >= down_at], 60,
                 "a request that needed the store failing while it is down")
        database.start()
        up_at = load.now()
        answered_after(load, up_at + 5)
    check_answers(load, {STORE_DOWN})
    assert all(a.status == 200 for a in load.answers if a.started > up_at + 5), "not reconnected"
    assert {r["replica_id"] for r in serve_replicas(cluster)["Ingress"]} == before
    check_store(database.url_of_store, load.answers)


def test_a_worker_node_lost_under_load(cluster, database):
    """node_b SIGKILLed (its raylet, replicas and agents) while four clients work: no request hangs;
    those it held get a JSON 503 with Retry-After (from Serve's proxy for the lost ingress replica,
    from the ingress for a lost model replica); Serve starts the lost stages again on node_a; every
    answered text is stored once; the claims the dead ingress held lapse within their lease, so the
    failed requests sent again are answered."""
    lost = {name for name, on in placement(cluster).items() if "node_b" in on}
    engine = create_engine(database.url_of_store)
    with SteadyLoad(cluster.url, AUTH, "loss") as load:
        held = kill_while_holding_requests(cluster, "node_b")
        killed_at = load.now()
        with engine.connect() as connection:  # the database's clock, just after the loss
            killed_on_db_clock = connection.scalar(select(func.now()))
        wait_for(lambda: runs_only_on(cluster, "node_a"), 90, "every stage running again on node_a")
        back_s = load.now() - killed_at
        answered_after(load, killed_at + back_s)
    check_answers(load, {INGRESS_LOST, REPLACED})
    died = [a for a in load.failed() if a.started < killed_at]
    assert died, f"node_b's replicas held {held} requests when it was lost, yet none failed"
    last_failure_s = max((a.started + a.seconds for a in load.failed()), default=killed_at) - killed_at
    print(f"node_b lost with {sorted(lost)} holding {held} requests, {len(died)} died with it, under "
          f"{len(load.answers)} requests: "
          f"{Counter(a.status for a in load.answers)}, the longest took {max(a.seconds for a in load.answers):.1f} s, "
          f"the last failure {last_failure_s:.1f} s after the loss, every stage back on node_a after {back_s:.1f} s")
    assert "Ingress" in lost  # one per node: the proxy's answer for a lost ingress replica is in play
    assert all(a.status == 200 for a in load.answers if a.started > killed_at + back_s)

    assert runs_only_on(cluster, "node_a")  # every stage, on the surviving node
    wait_for(lambda: len([r for r in serve_replicas(cluster, None)["Ingress"] if r["state"] != "RUNNING"]) == 1,
             60, "the second ingress replica waiting for a node of its own")
    check_store(database.url_of_store, load.answers)

    with engine.connect() as connection:  # the lost ingress's claims were not renewed past their lease
        lease_end = killed_on_db_clock + timedelta(seconds=CLAIM_LEASE_S + 1)
        assert connection.scalar(select(func.count()).select_from(WorkClaimRow).where(
            WorkClaimRow.expires > lease_end)) == 0
    engine.dispose()
    with httpx.Client(base_url=cluster.url, headers=AUTH, timeout=REQUEST_TIMEOUT_S) as http:
        for answer in load.failed():
            if answer.sent.startswith("Sign"):
                contents, md5 = sign(answer.sent)
                assert http.post("/run_ocrtsl/", json={"contents": contents, "md5": md5}).status_code == 200
            else:
                assert http.post("/run_tsl/", json={"text": answer.sent}).status_code == 200


def test_the_lost_node_rejoining_gets_its_ingress_back(cluster):
    """node_b started again (a new Ray node with the same resources): the ingress replica that had no
    node of its own starts there, and the API answers through both. Serve moves no running replica:
    the model stages spread again on the next deployment (the test after this one)."""
    cluster.rejoin("node_b")
    wait_for(lambda: placement(cluster)["Ingress"] == ["node_a", "node_b"], 90, "an ingress replica on node_b")
    with SteadyLoad(cluster.url, AUTH, "rejoin") as load:
        answered_after(load, 0, 12)
    check_answers(load)


def test_the_node_loss_benchmark_runs_on_this_cluster(cluster, tmp_path, capsys):
    """bench/node_loss.py at its tiny size on this cluster (the suite's run of it: it needs one), then
    node_b's ingress replica back: its load, node_b killed and started again, the per-second table and
    plot it writes, the summary it prints."""
    from bench import node_loss

    load = node_loss.run(cluster, AUTH, tmp_path, tag="bench-loss", **node_loss.TINY)
    printed = capsys.readouterr().out
    wait_for(lambda: placement(cluster)["Ingress"] == ["node_a", "node_b"], 90, "an ingress replica on node_b again")
    check_answers(load, {INGRESS_LOST, REPLACED})
    with (tmp_path / "node_loss.csv").open() as file:
        rows = list(csv.DictReader(file))
    assert [int(row["t_s"]) for row in rows] == list(range(int(node_loss.TINY["duration"])))
    assert sum(int(row["answered"]) for row in rows) == sum(a.status == 200 for a in load.answers
                                                            if a.started + a.seconds < len(rows))
    assert 2 in {int(row["Ingress_replicas"]) for row in rows[:4]}  # Serve's status, read every second
    assert (tmp_path / "node_loss.png").read_bytes().startswith(b"\x89PNG")
    assert re.search(r"^\d+ requests: \{.*\}; \d+\.\d answered/s before the loss; errors from .* "
                     r"\(node_b killed at 4 s\); the slowest request \d+\.\d s$", printed, re.MULTILINE), printed


def test_a_changed_config_deployed_under_load_fails_no_request(cluster, database):
    """`serve deploy` of configs/cluster.yaml with a changed translator batch size while four clients
    work: every replica is replaced (a rolling update: the old ones finish what they hold), no request
    fails, and the new replicas spread over both workers again."""
    def replica_ids() -> set[str]:
        return {r["replica_id"] for running in serve_replicas(cluster).values() for r in running}

    def all_replaced() -> bool:
        return all(serve_replicas(cluster).values()) and not before & replica_ids()

    before = replica_ids()
    config = cluster.config(database.url_of_store, cluster.temp_dir.parent / "data", cluster.temp_dir.parent / "models")
    config["applications"][0]["args"]["translator"]["max_batch_size"] = 8
    with SteadyLoad(cluster.url, AUTH, "redeploy") as load:
        answered_after(load, 0, 4)
        cluster.deploy(config, cluster.temp_dir.parent / "changed.yaml")
        wait_for(all_replaced, 180, "every replica replaced")
        cluster.wait_running()
        answered_after(load, load.now())  # by the new replicas
    check_answers(load)
    assert not load.failed()
    on = placement(cluster)
    assert runs_only_on(cluster, "node_a", "node_b") and set().union(*on.values()) == {"node_a", "node_b"}, on
    check_store(database.url_of_store, load.answers)


def test_a_node_drained_under_load_hands_its_replicas_over_then_leaves(cluster):
    """The runbook's way to take a machine out, while four clients work: `ray drain-node` on node_b
    with a deadline, and Serve starts its model replicas on node_a and stops them on node_b; its
    ingress replica, which cannot move (one per node, node_a has one), is stopped gracefully before
    the deadline. Once nothing is left there, not even a replica finishing its requests, the node is
    stopped (`ray stop` on it): no request fails."""
    with SteadyLoad(cluster.url, AUTH, "drain") as load:
        answered_after(load, 0, 4)
        node_b = cluster.node_ids()["node_b"]
        cluster.drain("node_b", DRAIN_DEADLINE_S)
        drained_at = load.now()
        wait_for(lambda: runs_only_on(cluster, "node_a") and not [  # nor stopping: finishing what it holds
            r for replicas in serve_replicas(cluster, None).values() for r in replicas if r.get("node_id") == node_b],
            DRAIN_DEADLINE_S + 30, "nothing left on node_b")
        moved_s = load.now() - drained_at
        cluster.stop_worker("node_b")
        answered_after(load, load.now())
    print(f"node_b drained in {moved_s:.1f} s under {len(load.answers)} requests: "
          f"{Counter(a.status for a in load.answers)}")
    check_answers(load)
    assert not load.failed()
    wait_for(lambda: set(cluster.node_ids()) == {"head", "node_a"}, 60, "node_b gone from the cluster")


def test_rays_token_rotates_by_a_new_cluster_beside_the_old(cluster, database):
    """Ray checks one token, read once by each of its processes: its token rotates by replacing the
    cluster, as KubeRay's RayService does when its cluster spec changes (docs/operations.md). A second
    cluster with a token of its own starts on the same store while the old one works under load: it
    answers what the old one stored (the md5-only call, the selection) before any model ran on it, each
    cluster refuses the other's token, and the old one fails no request meanwhile."""
    contents, md5 = encode(render([((20, 20), "Blue and green")], size=(420, 90)))
    with httpx.Client(base_url=cluster.url, headers=AUTH, timeout=REQUEST_TIMEOUT_S) as http:
        stored = http.post("/run_ocrtsl/", json={"contents": contents, "md5": md5})
        assert stored.status_code == 200, stored.text
        selection = {key: http.get("/").json()[key] for key in ("lang_src", "lang_dst", "tsl_selected")}
    with SteadyLoad(cluster.url, AUTH, "rotate-ray") as load:
        green = start_three_nodes(Path(tempfile.mkdtemp(prefix="ocr-mn2-")), database.url_of_store, TOKEN)
        try:
            assert green.ray_token.read_text() != cluster.ray_token.read_text()
            with httpx.Client(base_url=green.url, headers=AUTH, timeout=REQUEST_TIMEOUT_S) as http:
                answered = http.post("/run_ocrtsl/", json={"md5": md5})
                assert answered.status_code == 200 and answered.json() == stored.json()
                assert {key: http.get("/").json()[key] for key in selection} == selection
            for one, other in ((cluster, green), (green, cluster)):
                refused = httpx.get(f"{one.dashboard_url}/api/jobs/", timeout=30,
                                    headers={"Authorization": f"Bearer {other.ray_token.read_text().strip()}"})
                assert refused.status_code in (401, 403), refused.status_code
                assert one.dashboard("/api/jobs/") is not None  # its own token opens it
        finally:
            green.stop()
    check_answers(load)
    assert not load.failed()
