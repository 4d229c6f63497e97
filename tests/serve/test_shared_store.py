"""Several ingress replicas sharing one PostgreSQL store, as on a cluster: identical work arriving
at different replicas at once is computed once, and everyone gets the same answer."""

import concurrent.futures
import time
from pathlib import Path

import httpx
import pytest
from ray import serve

import graph
from core.settings import Limits, WeightSources
from models_registry import Registry
from service.coalescing import CLAIM_LEASE_S, claim_name
from service.jobs import Overrides
from service.service import OcrTranslateService
from service.store import Store
from tests.support.images import encode, render
from tests.support.live import AUTH

APP = "ocr_translate_pg"
MODELS = {"box_model_id": "easyocr/craft", "ocr_model_id": "tesseract/eng", "tsl_model_id": "apertium/eng-spa"}


@pytest.fixture(scope="module")
def shared_store(live, postgres, tmp_path_factory):
    """A second app on the live cluster at /pg: two ingress replicas, PostgreSQL, small CPU shares."""
    options = {name: {"ray_actor_options": {"num_cpus": 0.05}, "autoscaling_config": None, "num_replicas": 1}
               for name in ("BoxDetector", "OCRReader", "Translator")}
    options["Ingress"] = {"ray_actor_options": {"num_cpus": 0.05}, "autoscaling_config": None, "num_replicas": 2}
    args = {**live.app_args, "data_dir": str(tmp_path_factory.mktemp("pg-data")),
            "database_url": postgres.new_database(),
            "limits": {"max_requests_in_flight": 100, "max_requests_in_flight_per_client": 100},
            "coalescing": {"across_replicas": True}}  # configs/local.yaml, with one ingress replica, has it off
    serve.run(graph.app_from_config(graph.LOCAL_CONFIG, options, **args), name=APP, route_prefix="/pg")
    with httpx.Client(base_url=f"{live.url}/pg", timeout=300, headers=AUTH) as client:
        assert client.post("/set_lang/", json={"lang_src": "en", "lang_dst": "es"}).status_code == 200
        assert client.post("/set_models/", json=MODELS).status_code == 200
        client.database_url = args["database_url"]
        yield client
    serve.delete(APP)


def model_counts() -> dict[str, int]:
    def stats(deployment: str) -> dict:
        return serve.get_deployment_handle(deployment, app_name=APP).stats.remote().result()
    return {"box": stats("BoxDetector")["calls"].get("easyocr/craft", 0),
            "ocr": stats("OCRReader")["items"].get("tesseract/eng", 0),
            "tsl": stats("Translator")["items"].get("apertium/eng-spa", 0)}


def test_two_ingress_replicas_on_postgresql_compute_each_new_image_once(shared_store, live):
    deployments = serve.status().applications[APP].deployments
    assert deployments["Ingress"].replica_states.get("RUNNING") == 2
    images = [encode(render([((30, 30), f"Shared store image {i}\nread once by one replica.")], size=(600, 160)))
              for i in range(5)]
    before = model_counts()

    def send(i: int) -> httpx.Response:
        contents, md5 = images[i % len(images)]
        with httpx.Client(base_url=f"{live.url}/pg", timeout=300) as client:  # a connection per caller
            return client.post("/run_ocrtsl/", json={"contents": contents, "md5": md5})

    with concurrent.futures.ThreadPoolExecutor(50) as pool:
        responses = list(pool.map(send, range(50)))
    assert [r.status_code for r in responses] == [200] * 50, [r.text for r in responses if r.status_code != 200]
    for i in range(len(images)):
        answers = [r.json() for n, r in enumerate(responses) if n % len(images) == i]
        assert all(answer == answers[0] for answer in answers) and len(answers[0]["result"]) == 1
    after = model_counts()
    assert {stage: after[stage] - before[stage] for stage in after} == {"box": 5, "ocr": 5, "tsl": 5}


def test_a_killed_replicas_claim_delays_the_same_work_elsewhere_by_at_most_its_lease(shared_store, live):
    """A replica claimed an image's work and was killed before it finished: its claim is in the store,
    nobody renews it. Another replica answers the same request once the lease runs out."""
    contents, md5 = encode(render([((30, 30), "Work a killed replica had claimed.")], size=(600, 100)))
    store = Store(shared_store.database_url)
    registry = Registry.load([Path(d) for d in live.app_args["registry_dirs"]],
                             WeightSources(models_dirs=[Path(d) for d in live.app_args["weights"]["models_dirs"]]))
    service = OcrTranslateService(store, registry, stages=None, limits=Limits())
    job = service.pipeline.jobs.resolve(Overrides(), None, True)
    assert store.claim(claim_name((md5, job.identity, False)), "killed-replica", CLAIM_LEASE_S)
    started = time.monotonic()
    response = shared_store.post("/run_ocrtsl/", json={"contents": contents, "md5": md5})
    waited = time.monotonic() - started
    assert response.status_code == 200 and "killed replica" in response.json()["result"][0]["ocr"]
    assert CLAIM_LEASE_S - 5 < waited < CLAIM_LEASE_S + 15, waited  # the lease, not the old 5 minutes
