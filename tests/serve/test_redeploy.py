"""Re-applying a changed config the operator's way (`serve deploy`, or KubeRay updating the
RayService): deployment options such as batching (`user_config`) change the running replicas in
place; changed `args` (model entries, settings the replicas are built with) roll new replicas in.
Requests keep being answered throughout, and replicas added to a serving deployment load its models
before they take requests."""

import copy
import threading
from collections import Counter
from typing import Any

import httpx
import ray
import yaml
from ray import serve
from ray.serve.context import _get_global_client
from ray.serve.schema import ServeDeploySchema

import graph
from tests.support.live import AUTH, MODELS
from tests.support.waiting import wait_for

APP, PREFIX = "ocr_translate_declared", "/declared"
DEADLINE_S = 120


def declared_config(live, data_dir) -> dict[str, Any]:
    """configs/local.yaml as a second application of the test cluster, one small replica each."""
    config = yaml.safe_load(graph.LOCAL_CONFIG.read_text())
    [app] = config["applications"]
    app.update(name=APP, route_prefix=PREFIX)
    app["args"] = {**app["args"], **live.app_args, "data_dir": str(data_dir), "limits": {"max_requests_in_flight": 100}}
    for deployment in app["deployments"]:
        deployment.pop("autoscaling_config", None)
        deployment.update(ray_actor_options={"num_cpus": 0.05}, num_replicas=1)
    return config


def deploy(config: dict[str, Any]) -> None:
    """What `serve deploy` does: the dashboard's REST API hands the config to the controller with
    this very call (the test cluster runs no dashboard)."""
    _get_global_client().deploy_apps(ServeDeploySchema.model_validate(config))


def deployment(config: dict[str, Any], name: str) -> dict[str, Any]:
    return next(d for d in config["applications"][0]["deployments"] if d["name"] == name)


def replica_names() -> dict[str, set[str]]:
    """The live replica actors of the declared app, per deployment."""
    names: dict[str, set[str]] = {}
    for actor in ray.util.list_named_actors(all_namespaces=True):
        if actor["name"].startswith(f"SERVE_REPLICA::{APP}#"):
            names.setdefault(actor["name"].split("#")[1], set()).add(actor["name"])
    return names


def settled_status(client: httpx.Client, settled) -> dict[str, Any]:
    """The declared app's /status once `settled(status)` holds and Serve reports the app running."""
    def status_if_settled():
        status = client.get("/status").json()
        return status if serve.status().applications[APP].status == "RUNNING" and settled(status) else None

    return wait_for(status_if_settled, DEADLINE_S, "the redeployed app settling", interval_s=0.5)


def translator(status: dict[str, Any]) -> list[dict[str, Any]]:
    return status["deployments"]["Translator"].get("running", [])


def test_deployment_options_apply_in_place_and_changed_args_roll_replicas_while_serving(live, tmp_path):
    config = declared_config(live, tmp_path)
    deploy(config)
    client = httpx.Client(base_url=f"{live.url}{PREFIX}", timeout=DEADLINE_S, headers=AUTH)
    stop, statuses = threading.Event(), []

    def load(caller: int) -> None:
        sent = 0
        while not stop.is_set():
            sent += 1
            text = f"Caller {caller} sends text {sent} while the config changes."
            statuses.append(client.post("/run_tsl/", json={"text": text}).status_code)

    callers = [threading.Thread(target=load, args=(n,)) for n in range(3)]
    try:
        settled_status(client, lambda status: len(translator(status)) == 1)
        assert client.post("/set_lang/", json={"lang_src": "en", "lang_dst": "es"}).status_code == 200
        assert client.post("/set_models/", json=MODELS).status_code == 200
        before = replica_names()
        # Each application's /status lists its own replicas only, though they share one board.
        assert len(translator(live.http.get("/status").json())) == 1
        assert translator(client.get("/status").json())[0]["batching"]["max_batch_size"] == 16
        for caller in callers:
            caller.start()

        # Deployment options only: the same replicas, reconfigured.
        batching = {"max_batch_size": 3, "batch_wait_timeout_s": 0.07}
        in_place = copy.deepcopy(config)
        deployment(in_place, "Translator")["user_config"] = batching
        deployment(in_place, "OCRReader")["max_ongoing_requests"] = 32
        deploy(in_place)
        status = settled_status(client, lambda status: [r["batching"] for r in translator(status)] == [batching])
        assert replica_names() == before
        assert serve.get_deployment_handle("Translator", app_name=APP).stats.remote().result()["batching"] == batching

        # Changed args: every replica is replaced (Serve versions an application's code by its args),
        # and the deployment options of the config still hold on the new ones.
        rolled = copy.deepcopy(in_place)
        rolled["applications"][0]["args"]["translator"]["max_models_per_replica"] = 3
        deploy(rolled)
        old_translator = {r["replica"] for r in translator(status)}
        status = settled_status(client, lambda status: len(translator(status)) == 1
                          and translator(status)[0]["replica"] not in old_translator)
        assert translator(status)[0]["batching"] == batching
        after = replica_names()
        assert all(after[name].isdisjoint(before[name]) for name in before), (before, after)
        answered = len(statuses)
        wait_for(lambda: len(statuses) >= answered + 10, DEADLINE_S, "ten answers from the new replicas")
        stop.set()
        for caller in callers:
            caller.join()
        assert len(statuses) > 20 and set(statuses) == {200}, Counter(statuses)

        # One more Translator replica, with no request arriving: it loads what its sibling holds
        # before it takes any, so a replica added under load serves at once.
        scaled = copy.deepcopy(rolled)
        deployment(scaled, "Translator")["num_replicas"] = 2
        deploy(scaled)
        status = settled_status(client, lambda status: len(translator(status)) == 2)
        assert all(r["loaded"] == [MODELS["tsl_model_id"]] for r in translator(status)), translator(status)
    finally:
        stop.set()
        for caller in callers:
            if caller.is_alive():
                caller.join()
        client.close()
        serve.delete(APP)
