"""A second application on the session's cluster, deployed from configs/local.yaml the operator's
way (`serve deploy`), for tests that change deployment options while it runs or need a replica
count the shared app does not have. Changing only a deployment's `user_config` reconfigures the
running replicas in place (tests/serve/test_redeploy.py shows they stay the same), so counters survive.
"""

import copy
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import yaml
from ray import serve
from ray.serve.context import _get_global_client
from ray.serve.schema import ServeDeploySchema

import graph

from .live import AUTH
from .waiting import wait_for

DEADLINE_S = 120


class DeclaredApp:
    def __init__(self, name: str, url: str, config: dict[str, Any]):
        self.name = name
        self.config = config
        """The config last deployed; `deploy` takes a changed copy."""
        self.http = httpx.Client(base_url=url, timeout=DEADLINE_S, headers=AUTH)

    def deployment(self, config: dict[str, Any], name: str) -> dict[str, Any]:
        return next(d for d in config["applications"][0]["deployments"] if d["name"] == name)

    def deploy(self, config: dict[str, Any]) -> None:
        """What `serve deploy` does: the dashboard's REST API hands the config to the controller with
        this very call (the test cluster runs no dashboard)."""
        _get_global_client().deploy_apps(ServeDeploySchema.model_validate(config))
        self.config = config

    def handle(self, deployment: str):
        return serve.get_deployment_handle(deployment, app_name=self.name)

    def stats(self, deployment: str) -> dict[str, Any]:
        """The counters of the replica the call reaches (the only one where a deployment has one)."""
        return self.handle(deployment).stats.remote().result()

    def wait_for(self, settled: Callable[[], bool], what: str) -> None:
        wait_for(lambda: serve.status().applications[self.name].status == "RUNNING" and settled(), DEADLINE_S,
                 f"{self.name}: {what}")

    def running_replicas(self, deployment: str) -> int:
        return serve.status().applications[self.name].deployments[deployment].replica_states.get("RUNNING", 0)

    def set_batching(self, deployment: str, batching: dict[str, Any] | None) -> None:
        """Set (None: drop) the deployment's `user_config` and wait until its replica runs with it;
        dropped, the replica goes back to the batching of the app's args."""
        config = copy.deepcopy(self.config)
        entry = self.deployment(config, deployment)
        if batching is None:
            entry.pop("user_config", None)
        else:
            entry["user_config"] = batching
        self.deploy(config)
        expected = batching or self.default_batching(deployment)
        self.wait_for(lambda: self.stats(deployment)["batching"] == expected, f"{deployment} batching {expected}")

    def default_batching(self, deployment: str) -> dict[str, Any]:
        from core.settings import AppArgs

        key = {"BoxDetector": "box_detector", "OCRReader": "ocr_reader", "Translator": "translator"}[deployment]
        settings = getattr(AppArgs.model_validate(self.config["applications"][0]["args"]), key)
        return {"max_batch_size": settings.max_batch_size, "batch_wait_timeout_s": settings.batch_wait_timeout_s}


@contextmanager
def declared_app(live, data_dir: Path, name: str, replicas: dict[str, int] | None = None,
                 args: dict[str, Any] | None = None) -> Iterator[DeclaredApp]:
    """configs/local.yaml as application `name` at /`name`, with the session app's models and token,
    small CPU shares, `replicas` per deployment (default one each) and `args` over its args, a dict
    merged into a dict (e.g. {"ocr_reader": {"max_models_per_replica": 1}})."""
    config = yaml.safe_load(graph.LOCAL_CONFIG.read_text())
    [app] = config["applications"]
    app.update(name=name, route_prefix=f"/{name}")
    merged = {**app["args"], **live.app_args, "data_dir": str(data_dir),
              "limits": {"max_requests_in_flight": 100, "max_requests_in_flight_per_client": 100}}
    for key, value in (args or {}).items():
        merged[key] = {**merged[key], **value} if isinstance(merged.get(key), dict) else value
    app["args"] = merged
    for deployment in app["deployments"]:
        deployment.pop("autoscaling_config", None)
        deployment.update(ray_actor_options={"num_cpus": 0.05},
                          num_replicas=(replicas or {}).get(deployment["name"], 1))
    declared = DeclaredApp(name, f"{live.url}/{name}", config)
    try:
        declared.deploy(config)
        declared.wait_for(lambda: all(declared.running_replicas(d["name"]) == d["num_replicas"]
                                      for d in app["deployments"]) and declared.http.get("/").status_code == 200,
                          "all replicas running")
        yield declared
    finally:
        declared.http.close()
        serve.delete(name)


BATCH_HOLD_S = 30
"""Batch wait while a test counts forward passes: only a full batch fires."""


@contextmanager
def full_batches(app: DeclaredApp, deployment: str, size: int) -> Iterator[None]:
    app.set_batching(deployment, {"max_batch_size": size, "batch_wait_timeout_s": BATCH_HOLD_S})
    try:
        yield
    finally:
        app.set_batching(deployment, None)


def counted(app: DeclaredApp, deployment: str, model_id: str, send) -> tuple[list, int, int]:
    """Answers of `send()`, and the forward passes and items the deployment counted for the model meanwhile."""
    before = app.stats(deployment)
    answers = send()
    after = app.stats(deployment)
    return (answers, after["calls"].get(model_id, 0) - before["calls"].get(model_id, 0),
            after["items"].get(model_id, 0) - before["items"].get(model_id, 0))
