"""A real multi-node Ray cluster on this machine (tools/local_cluster.py): a head without model
resources, node_a declaring Tesseract and Apertium, node_b only Apertium; configs/cluster.yaml deployed
with `serve deploy` as an operator does (paths, ports and the one proxy changed for one machine),
PostgreSQL as the shared store. Replicas are placed as the config says."""

import sys
import tempfile
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, func, select

from service.store import TranslationRunRow

from .images import encode, render

sys.path.insert(0, str(Path(__file__).parent.parent / "tools"))
from local_cluster import LocalCluster, start_three_nodes  # noqa: E402

TOKEN = "multinode-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
MODELS = {"box_model_id": "rapidocr/ppocr-v4-det", "ocr_model_id": "tesseract/eng", "tsl_model_id": "apertium/eng-spa"}


@pytest.fixture(scope="module")
def cluster(postgres):
    database = postgres.new_database()
    cluster = start_three_nodes(Path(tempfile.mkdtemp(prefix="ocr-mn-")), database, TOKEN)
    cluster.database_url = database
    yield cluster
    cluster.stop()


def serve_replicas(cluster: LocalCluster) -> dict[str, list[dict]]:
    """Per deployment, its running replicas as Serve's REST API (the dashboard's) reports them."""
    details = httpx.get(f"{cluster.dashboard_url}/api/serve/applications/", timeout=30).json()
    deployments = details["applications"]["ocr_translate"]["deployments"]
    return {name: [r for r in deployment["replicas"] if r["state"] == "RUNNING"]
            for name, deployment in deployments.items()}


def test_replicas_are_placed_as_the_config_says(cluster):
    nodes = cluster.node_ids()
    assert set(nodes) == {"head", "node_a", "node_b"}
    replicas = serve_replicas(cluster)
    on = {name: sorted(next(n for n, node_id in nodes.items() if node_id == r["node_id"]) for r in running)
          for name, running in replicas.items()}
    assert on["Ingress"] == ["node_a", "node_b"]  # min 2, at most one per node: one on each worker
    assert on["OCRReader"] == ["node_a"]  # only node_a declares tesseract
    assert set(on["Translator"]) <= {"node_a", "node_b"} and on["Translator"]
    assert all("head" not in names for names in on.values()), on  # the head has no CPUs for replicas

    # /status names each model replica's node as Ray knows it
    status = httpx.get(f"{cluster.url}/status", headers={**AUTH, "Accept": "application/json"}, timeout=60).json()
    for name in ("BoxDetector", "OCRReader", "Translator"):
        shown = {replica["node_id"] for replica in status["deployments"][name]["running"]}
        assert shown == {r["node_id"] for r in replicas[name]}, name


def test_a_page_is_read_and_translated_across_the_nodes_into_postgresql(cluster):
    with httpx.Client(base_url=cluster.url, headers=AUTH, timeout=300) as http:
        assert http.post("/set_lang/", json={"lang_src": "en", "lang_dst": "es"}).status_code == 200
        response = http.post("/set_models/", json=MODELS)
        assert response.status_code == 200, response.text
        contents, md5 = encode(render([((30, 30), "The house is on the hill.")], size=(600, 100)))
        response = http.post("/run_ocrtsl/", json={"contents": contents, "md5": md5})
        assert response.status_code == 200, response.text
        [block] = response.json()["result"]
        assert block["ocr"] == "The house is on the hill." and "casa" in block["tsl"].lower()
        # the md5-only call, from whichever ingress replica takes it, reads the shared store
        for _ in range(6):
            assert http.post("/run_ocrtsl/", json={"md5": md5}).json()["result"] == [block]
    engine = create_engine(cluster.database_url)
    with engine.connect() as connection:
        assert connection.scalar(select(func.count()).select_from(TranslationRunRow)) == 1
    engine.dispose()
