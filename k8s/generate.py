"""Write the KubeRay manifests from the Serve configs: `make k8s` (or `python k8s/generate.py`).

Each RayService embeds one file of configs/ verbatim as its serveConfigV2, so a config is changed
in one place; tests/unit/test_configs.py fails when a manifest was not regenerated after a change.
The pods get the database URL (environment) and the API tokens (a mounted file, read again when the
Secret changes) from the Secret `ocr-translate-serve` (keys `database-url`, `api-token`), and the model
folders from the volume claim `ocr-translate-models`.

Only the API is open. Each file holds the RayService and a NetworkPolicy: the Serve HTTP port is
reachable from anywhere, Ray's other ports (GCS, dashboard, client, metrics, the workers' own) only
from the RayService's own pods, and the dashboard also from the KubeRay operator, which manages the
Serve applications through it. Ray's token authentication is on (KubeRay's `authOptions`, the token in
the Secret `ocr-translate-serve-ray-token`, key `auth_token`), and every pod runs as the image's
non-root user with no privilege escalation, no capabilities and the runtime's default seccomp profile.
"""

import sys
from pathlib import Path
from typing import Any

import yaml

from core.api_tokens import API_TOKEN_FILE_ENV
from deployments.proxy_errors import PROXY_CALLBACK, PROXY_CALLBACK_ENV

ROOT = Path(__file__).resolve().parent.parent
RAY_VERSION = "2.60.0"
SECRET = "ocr-translate-serve"
MODELS_CLAIM = "ocr-translate-models"
TOKENS_DIR, TOKENS_FILE = "/etc/ocr-translate-serve", "api-tokens"
RAY_TOKEN_SECRET = "ocr-translate-serve-ray-token"
"""KubeRay's `authOptions.secretName`: the Secret (key `auth_token`) whose token the operator puts in every
Ray container (RAY_AUTH_MODE=token, RAY_AUTH_TOKEN) and sends to the dashboard itself."""
SERVICE_LABEL = "ocr-translate-serve/rayservice"
"""Set on the head's and the workers' pod templates (value: the RayService's name): the NetworkPolicy
selects the pods by it, whichever RayCluster KubeRay runs them in (its own `ray.io/cluster` label
changes with every cluster a RayService upgrade starts)."""
OPERATOR_NAMESPACE = "kuberay-system"
OPERATOR_POD_LABELS = {"app.kubernetes.io/name": "kuberay-operator"}  # the label KubeRay's Helm chart puts on it
DASHBOARD_PORT = 8265
RAY_UID, RAY_GID = 1000, 100
"""The image's own user `ray` and its group `users` (k8s/Dockerfile.*: `USER 1000:100`)."""
POD_SECURITY = {"runAsNonRoot": True, "runAsUser": RAY_UID, "runAsGroup": RAY_GID,
                "seccompProfile": {"type": "RuntimeDefault"}}
CONTAINER_SECURITY = {"runAsNonRoot": True, "allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]},
                      "seccompProfile": {"type": "RuntimeDefault"}}
"""Every container's: the Ray containers', the autoscaler's (`autoscalerOptions`) and the init container
KubeRay adds to the workers (it copies the Ray container's)."""


class _Block(str):
    """A string written as a YAML block (`|`), as people write serveConfigV2."""


class _Dumper(yaml.SafeDumper):
    """Writes a value used twice (the securityContexts) out each time, not as a YAML alias (&id001)."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


_Dumper.add_representer(_Block, lambda dumper, text: dumper.represent_scalar(
    "tag:yaml.org,2002:str", text, style="|"))


def _env() -> list[dict[str, Any]]:
    """Read in every Ray process of the pod (the replicas and proxies inherit it): secrets stay out of
    serveConfigV2; every node's proxy answers a request lost with its ingress replica in JSON."""
    def secret(name: str, key: str, optional: bool) -> dict[str, Any]:
        return {"name": name, "valueFrom": {"secretKeyRef": {"name": SECRET, "key": key, "optional": optional}}}
    return [secret("OCR_SERVE_DATABASE_URL", "database-url", False),
            {"name": API_TOKEN_FILE_ENV, "value": f"{TOKENS_DIR}/{TOKENS_FILE}"},
            {"name": PROXY_CALLBACK_ENV, "value": PROXY_CALLBACK}]


def _container(name: str, image: str, resources: dict[str, str], ports: list[dict] | None = None) -> dict[str, Any]:
    container = {
        "name": name, "image": image, "env": _env(),
        "resources": {"limits": dict(resources), "requests": dict(resources)},
        "volumeMounts": [{"name": "models", "mountPath": "/models", "readOnly": True},
                         {"name": "data", "mountPath": "/data"},
                         {"name": "api-tokens", "mountPath": TOKENS_DIR, "readOnly": True}],
        "securityContext": CONTAINER_SECURITY,
    }
    if ports:
        container["ports"] = ports
    return container


def _volumes() -> list[dict[str, Any]]:
    """The API tokens as a file from the Secret (its key `api-token`, one token a line): Kubernetes updates
    a mounted Secret in place and the server reads the file again, so a token rotates without a restart."""
    return [{"name": "models", "persistentVolumeClaim": {"claimName": MODELS_CLAIM, "readOnly": True}},
            {"name": "data", "emptyDir": {}},
            {"name": "api-tokens", "secret": {"secretName": SECRET, "defaultMode": 0o444,
                                              "items": [{"key": "api-token", "path": TOKENS_FILE}]}}]


def _template(service: str, container: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return {"metadata": {"labels": {SERVICE_LABEL: service}},
            "spec": {"securityContext": POD_SECURITY, "containers": [container], "volumes": _volumes(), **spec}}


def _head(service: str, image: str, serve_port: int) -> dict[str, Any]:
    """The head runs no replicas (num-cpus 0): the GCS, the dashboard, the Serve controller and a proxy.
    The dashboard listens on the pod's address (the operator reaches it there); the NetworkPolicy
    decides who may connect."""
    ports = [{"containerPort": 6379, "name": "gcs-server"}, {"containerPort": DASHBOARD_PORT, "name": "dashboard"},
             {"containerPort": 10001, "name": "client"}, {"containerPort": serve_port, "name": "serve"},
             {"containerPort": 8080, "name": "metrics"}]
    return {"rayStartParams": {"num-cpus": "0", "dashboard-host": "0.0.0.0", "metrics-export-port": "8080"},
            "template": _template(service, _container("ray-head", image, {"cpu": "2", "memory": "8Gi"}, ports))}


def network_policy(service: str, serve_port: int) -> dict[str, Any]:
    """Ingress to the RayService's pods: the Serve HTTP port from anywhere; every port from the service's
    own pods (Ray's nodes talk on many, some chosen at random); the dashboard from the KubeRay operator's
    pods in its namespace (`kubernetes.io/metadata.name`, a label Kubernetes sets and nobody can change).
    Egress stays open: the pods need DNS, the database and the Kubernetes API (the autoscaler)."""
    pods = {"matchLabels": {SERVICE_LABEL: service}}
    operator = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": OPERATOR_NAMESPACE}},
                "podSelector": {"matchLabels": dict(OPERATOR_POD_LABELS)}}
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": service},
        "spec": {
            "podSelector": pods,
            "policyTypes": ["Ingress"],
            "ingress": [
                {"ports": [{"protocol": "TCP", "port": serve_port}]},
                {"from": [{"podSelector": pods}]},
                {"from": [operator], "ports": [{"protocol": "TCP", "port": DASHBOARD_PORT}]},
            ],
        },
    }


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
    serve_port = yaml.safe_load(config_text)["http_options"]["port"]
    name = f"ocr-translate-serve-{kind}"
    workers = cluster["workers"]
    image = cluster["image"]
    worker_pod = {"tolerations": workers["tolerations"]} if "tolerations" in workers else {}
    service = {
        "apiVersion": "ray.io/v1",
        "kind": "RayService",
        "metadata": {"name": name},
        "spec": {
            "serveConfigV2": _Block(config_text),
            "rayClusterConfig": {
                "rayVersion": RAY_VERSION,
                "authOptions": {"mode": "token", "secretName": RAY_TOKEN_SECRET},
                "enableInTreeAutoscaling": True,
                "autoscalerOptions": {"idleTimeoutSeconds": 300, "securityContext": CONTAINER_SECURITY},
                "headGroupSpec": _head(name, image, serve_port),
                "workerGroupSpecs": [{
                    "groupName": workers["groupName"], "replicas": workers["replicas"],
                    "minReplicas": workers["minReplicas"], "maxReplicas": workers["maxReplicas"],
                    "rayStartParams": workers.get("rayStartParams", {}),
                    "template": _template(name, _container("ray-worker", image, workers["resources"]), **worker_pod)}],
            },
        },
    }
    header = (f"# Generated by k8s/generate.py from configs/{cluster['config']}: edit that file, then `make k8s`.\n"
              f"# Needs the image {image} (k8s/Dockerfile.{kind}, `make image`), the Secrets {SECRET} and\n"
              f"# {RAY_TOKEN_SECRET}, the volume claim {MODELS_CLAIM} and KubeRay's operator in the namespace\n"
              f"# {OPERATOR_NAMESPACE} (docs/operations.md, Kubernetes).\n")
    policy = (f"# Only the API is open: port {serve_port} from anywhere; Ray's ports from this RayService's pods, and\n"
              f"# the dashboard ({DASHBOARD_PORT}) from the KubeRay operator. People reach the dashboard with\n"
              f"# `kubectl port-forward`. Egress is not restricted.\n")
    return (header + yaml.dump(service, Dumper=_Dumper, sort_keys=False, width=120) + "---\n" + policy
            + yaml.dump(network_policy(name, serve_port), Dumper=_Dumper, sort_keys=False, width=120))


def path_of(kind: str) -> Path:
    return ROOT / "k8s" / f"rayservice-{kind}.yaml"


if __name__ == "__main__":
    for kind in CLUSTERS:
        path_of(kind).write_text(manifest(kind))
        print(f"wrote {path_of(kind).relative_to(ROOT)}", file=sys.stderr)
