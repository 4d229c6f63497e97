"""Write the KubeRay manifests from the Serve configs: `make k8s` (or `python k8s/generate.py`).

Each RayService embeds one file of configs/ verbatim as its serveConfigV2, so a config is changed
in one place; tests/test_configs.py fails when a manifest was not regenerated after a change.
The pods get the database URL and the API token from the Secret `ocr-translate-serve`
(keys `database-url`, `api-token`), and the model folders from the volume claim `ocr-translate-models`.
"""

import sys
from pathlib import Path
from typing import Any

import yaml

from deployments.proxy_errors import PROXY_CALLBACK, PROXY_CALLBACK_ENV

ROOT = Path(__file__).resolve().parent.parent
RAY_VERSION = "2.60.0"
SECRET = "ocr-translate-serve"
MODELS_CLAIM = "ocr-translate-models"


class _Block(str):
    """A string written as a YAML block (`|`), as people write serveConfigV2."""


yaml.SafeDumper.add_representer(_Block, lambda dumper, text: dumper.represent_scalar(
    "tag:yaml.org,2002:str", text, style="|"))


def _env() -> list[dict[str, Any]]:
    """Read in every Ray process of the pod (the replicas and proxies inherit it): secrets stay out of
    serveConfigV2; every node's proxy answers a request lost with its ingress replica in JSON."""
    def secret(name: str, key: str, optional: bool) -> dict[str, Any]:
        return {"name": name, "valueFrom": {"secretKeyRef": {"name": SECRET, "key": key, "optional": optional}}}
    return [secret("OCR_SERVE_DATABASE_URL", "database-url", False), secret("OCR_SERVE_API_TOKEN", "api-token", False),
            {"name": PROXY_CALLBACK_ENV, "value": PROXY_CALLBACK}]


def _container(name: str, image: str, resources: dict[str, str], ports: list[dict] | None = None) -> dict[str, Any]:
    container = {
        "name": name, "image": image, "env": _env(),
        "resources": {"limits": dict(resources), "requests": dict(resources)},
        "volumeMounts": [{"name": "models", "mountPath": "/models", "readOnly": True},
                         {"name": "data", "mountPath": "/data"}],
    }
    if ports:
        container["ports"] = ports
    return container


def _volumes() -> list[dict[str, Any]]:
    return [{"name": "models", "persistentVolumeClaim": {"claimName": MODELS_CLAIM, "readOnly": True}},
            {"name": "data", "emptyDir": {}}]


def _head(image: str) -> dict[str, Any]:
    """The head runs no replicas (num-cpus 0): the GCS, the dashboard, the Serve controller and a proxy."""
    ports = [{"containerPort": 6379, "name": "gcs-server"}, {"containerPort": 8265, "name": "dashboard"},
             {"containerPort": 10001, "name": "client"}, {"containerPort": 4000, "name": "serve"},
             {"containerPort": 8080, "name": "metrics"}]
    return {"rayStartParams": {"num-cpus": "0", "dashboard-host": "0.0.0.0", "metrics-export-port": "8080"},
            "template": {"spec": {"containers": [_container("ray-head", image, {"cpu": "2", "memory": "8Gi"}, ports)],
                                  "volumes": _volumes()}}}


CLUSTERS: dict[str, dict[str, Any]] = {
    # Each image is built from k8s/Dockerfile.<kind> by `make image`.
    "cpu": {"config": "cluster.yaml", "image": "ocr-translate-serve:latest", "workers": {
        "groupName": "cpu-workers", "replicas": 1, "minReplicas": 1, "maxReplicas": 8,
        "resources": {"cpu": "4", "memory": "16Gi"},
        # the image has Tesseract and Apertium: the config places OCRReader and Translator by these
        "rayStartParams": {"resources": '"{\\"tesseract\\": 1, \\"apertium\\": 1}"'}}},
    "gpu": {"config": "gpu.yaml", "image": "ocr-translate-serve:latest-gpu", "workers": {
        "groupName": "gpu-workers", "replicas": 1, "minReplicas": 1, "maxReplicas": 4,
        "resources": {"cpu": "8", "memory": "32Gi", "nvidia.com/gpu": "1"},
        "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]}},
}


def manifest(kind: str, config_text: str | None = None) -> str:
    """The RayService of one cluster kind, as the text of its file; `config_text` stands in for
    the config file's (tests use it to show that a changed config changes the manifest)."""
    cluster = CLUSTERS[kind]
    if config_text is None:
        config_text = (ROOT / "configs" / cluster["config"]).read_text()
    workers = cluster["workers"]
    image = cluster["image"]
    pod: dict[str, Any] = {"containers": [_container("ray-worker", image, workers["resources"])],
                           "volumes": _volumes()}
    if "tolerations" in workers:
        pod["tolerations"] = workers["tolerations"]
    service = {
        "apiVersion": "ray.io/v1",
        "kind": "RayService",
        "metadata": {"name": f"ocr-translate-serve-{kind}"},
        "spec": {
            "serveConfigV2": _Block(config_text),
            "rayClusterConfig": {
                "rayVersion": RAY_VERSION,
                "enableInTreeAutoscaling": True,
                "autoscalerOptions": {"idleTimeoutSeconds": 300},
                "headGroupSpec": _head(image),
                "workerGroupSpecs": [{
                    "groupName": workers["groupName"], "replicas": workers["replicas"],
                    "minReplicas": workers["minReplicas"], "maxReplicas": workers["maxReplicas"],
                    "rayStartParams": workers.get("rayStartParams", {}), "template": {"spec": pod}}],
            },
        },
    }
    header = (f"# Generated by k8s/generate.py from configs/{cluster['config']}: edit that file, then `make k8s`.\n"
              f"# Needs the image {image} (k8s/Dockerfile.{kind}, `make image`), the Secret {SECRET} and the\n"
              f"# volume claim {MODELS_CLAIM} (docs/operations.md).\n")
    return header + yaml.safe_dump(service, sort_keys=False, width=120)


def path_of(kind: str) -> Path:
    return ROOT / "k8s" / f"rayservice-{kind}.yaml"


if __name__ == "__main__":
    for kind in CLUSTERS:
        path_of(kind).write_text(manifest(kind))
        print(f"wrote {path_of(kind).relative_to(ROOT)}", file=sys.stderr)
