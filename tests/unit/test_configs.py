"""The Serve configs and the KubeRay manifests: valid for Ray and KubeRay, and in agreement; only the
manifests' API is open (NetworkPolicy), Ray's token authentication is on, and the pods run locked down."""

import copy
import json
from pathlib import Path

import jsonschema
import pytest
import yaml
from ray.serve.config import AutoscalingConfig
from ray.serve.schema import ServeDeploySchema

import graph
from core.api_tokens import API_TOKEN_FILE_ENV
from core.settings import DATABASE_URL_ENV, AppArgs, default_data_dir
from deployments.proxy_errors import PROXY_CALLBACK, PROXY_CALLBACK_ENV
from k8s import generate
from models_registry import Registry
from tests.support.paths import DATA, ROOT

CONFIGS = sorted((ROOT / "configs").glob("*.yaml"))
CRD = DATA / "kuberay" / "ray.io_rayservices.yaml"
"""KubeRay's RayService CRD, vendored with its Apache-2.0 licence (LICENSE.kuberay beside it)."""
NETWORK_POLICY_SCHEMA = DATA / "kubernetes" / "networkpolicy-networking-v1.json"
"""Kubernetes' NetworkPolicy schema, strict, vendored with its Apache-2.0 licence (README.md beside it)."""


def load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def manifest_objects(kind: str) -> dict[str, dict]:
    """The objects of a KubeRay manifest file, by kind: the RayService and its NetworkPolicy."""
    documents = list(yaml.safe_load_all(generate.path_of(kind).read_text()))
    objects = {document["kind"]: document for document in documents}
    assert len(objects) == len(documents), [document["kind"] for document in documents]
    return objects


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_config_is_a_valid_serve_config_for_our_graph(path):
    config = load(path)
    schema = ServeDeploySchema.model_validate(config)
    [application] = schema.applications
    assert application.import_path == "graph:build_app"
    AppArgs.model_validate(config["applications"][0]["args"])  # strict: typos in args fail
    for deployment in config["applications"][0]["deployments"]:
        # Serve drops misspelled deployment keys silently: every key must be a real option.
        assert deployment["name"] in graph.DEPLOYMENTS
        assert set(deployment) <= set(type(application.deployments[0]).model_fields), deployment
        if "autoscaling_config" in deployment:
            scaling = AutoscalingConfig(**deployment["autoscaling_config"])
            assert scaling.min_replicas <= scaling.max_replicas
    assert {d["name"] for d in config["applications"][0]["deployments"]} == set(graph.DEPLOYMENTS)


def test_local_config_is_the_safe_embedded_default():
    config = load(ROOT / "configs" / "local.yaml")
    assert (config["http_options"]["host"], config["http_options"]["port"]) == ("127.0.0.1", 4000)
    for deployment in config["applications"][0]["deployments"]:
        assert "num_gpus" not in deployment.get("ray_actor_options", {})
    application = config["applications"][0]
    replicas = {d["name"]: d.get("autoscaling_config", {}).get("max_replicas", d.get("num_replicas", 1))
                for d in application["deployments"]}
    cpus_at_max = sum(d["ray_actor_options"]["num_cpus"] * replicas[d["name"]] for d in application["deployments"])
    assert cpus_at_max <= 2
    for arg, name in (("box_detector", "BoxDetector"), ("ocr_reader", "OCRReader"), ("translator", "Translator")):
        threads = application["args"].get(arg, {}).get("threads", 1)
        assert threads * replicas[name] <= 2, (name, threads)  # scaled out, they never oversubscribe 2 cores


def test_local_config_starts_with_an_offline_pipeline():
    """The default selection names models that a fresh `make run` has (weights in packages)."""
    args = AppArgs.model_validate(load(ROOT / "configs" / "local.yaml")["applications"][0]["args"])
    defaults = args.default_selection
    registry = Registry.load()
    for kind, model_id in defaults.models:  # the config's `box_model`, `ocr_model`, `tsl_model`
        assert registry.availability(model_id).usable, (model_id, registry.availability(model_id).reason)
        assert registry.get(model_id).kind == kind
    assert registry.get(defaults.models.ocr).reads_language(defaults.lang_src)
    assert registry.get(defaults.models.tsl).translates(defaults.lang_src, defaults.lang_dst)


def test_gpu_config_shares_at_most_one_gpu():
    deployments = load(ROOT / "configs" / "gpu.yaml")["applications"][0]["deployments"]
    gpus = sum(d["ray_actor_options"].get("num_gpus", 0) * d.get("autoscaling_config", {}).get("max_replicas", 1)
               for d in deployments)
    assert 0 < gpus <= 1
    assert all(d["ray_actor_options"].get("num_gpus") for d in deployments if d["name"] != "Ingress")


def test_config_args_build_the_graph():
    for path in CONFIGS:
        application = graph.app_from_config(path)
        assert application is not None


def test_unknown_deployment_names_are_rejected():
    with pytest.raises(ValueError, match="no deployment named"):
        graph.bind_graph(AppArgs(), {"OCRReaderr": {"num_replicas": 1}})


def _strict(schema):
    """KubeRay's CRD with additionalProperties false wherever properties are listed (catches typos)."""
    if isinstance(schema, dict):
        schema = {key: _strict(value) for key, value in schema.items()}
        if "properties" in schema and "additionalProperties" not in schema:
            schema["additionalProperties"] = False
    elif isinstance(schema, list):
        schema = [_strict(item) for item in schema]
    return schema


@pytest.fixture(scope="module")
def rayservice_schema():
    crd = load(CRD)
    [v1] = [version for version in crd["spec"]["versions"] if version["name"] == "v1"]
    return _strict(v1["schema"]["openAPIV3Schema"])


@pytest.mark.parametrize("kind", generate.CLUSTERS)
def test_kuberay_manifests_validate_against_the_crd(rayservice_schema, kind):
    manifest = manifest_objects(kind)["RayService"]
    jsonschema.validate(manifest, rayservice_schema)
    cluster = manifest["spec"]["rayClusterConfig"]
    assert cluster["rayVersion"] == "2.60.0" and cluster["enableInTreeAutoscaling"] is True
    for pod in (cluster["headGroupSpec"]["template"]["spec"], cluster["workerGroupSpecs"][0]["template"]["spec"]):
        [container] = pod["containers"]
        secrets = {env["name"]: env["valueFrom"]["secretKeyRef"]["name"]
                   for env in container["env"] if "valueFrom" in env}
        assert secrets == {"OCR_SERVE_DATABASE_URL": "ocr-translate-serve"}
        values = {env["name"]: env["value"] for env in container["env"] if "value" in env}
        assert values == {PROXY_CALLBACK_ENV: PROXY_CALLBACK,  # every node's proxy answers a lost ingress in JSON
                          API_TOKEN_FILE_ENV: "/etc/ocr-translate-serve/api-tokens"}
        assert {"name": "models", "mountPath": "/models", "readOnly": True} in container["volumeMounts"]
        # The API tokens as a file Kubernetes updates in place (no subPath): a token rotates without a restart.
        assert {"name": "api-tokens", "mountPath": "/etc/ocr-translate-serve", "readOnly": True} in container[
            "volumeMounts"]
        [tokens] = [volume["secret"] for volume in pod["volumes"] if volume["name"] == "api-tokens"]
        assert tokens["secretName"] == "ocr-translate-serve"
        assert tokens["items"] == [{"key": "api-token", "path": "api-tokens"}]
    worker = cluster["workerGroupSpecs"][0]["template"]["spec"]["containers"][0]
    assert ("nvidia.com/gpu" in worker["resources"]["limits"]) == (kind == "gpu")


def test_strict_crd_validation_catches_misspelled_fields(rayservice_schema):
    manifest = manifest_objects("gpu")["RayService"]
    manifest["spec"]["rayClusterConfig"]["enableInTreeAutoscalling"] = True
    with pytest.raises(jsonschema.ValidationError, match="enableInTreeAutoscalling"):
        jsonschema.validate(manifest, rayservice_schema)
    manifest = manifest_objects("gpu")["RayService"]
    manifest["spec"]["rayClusterConfig"]["authOptions"]["mode"] = "tokens"
    with pytest.raises(jsonschema.ValidationError, match="tokens"):
        jsonschema.validate(manifest, rayservice_schema)


@pytest.mark.parametrize("kind", generate.CLUSTERS)
def test_kuberay_manifests_are_generated_from_the_configs_without_drift(kind):
    config_path = ROOT / "configs" / generate.CLUSTERS[kind]["config"]
    committed = generate.path_of(kind).read_text()
    assert committed == generate.manifest(kind), f"{config_path.name} changed: run `make k8s`"
    embedded = yaml.safe_load(manifest_objects(kind)["RayService"]["spec"]["serveConfigV2"])
    assert embedded == load(config_path)
    ServeDeploySchema.model_validate(embedded)
    changed = config_path.read_text().replace("max_ongoing_requests: 200", "max_ongoing_requests: 300")
    assert generate.manifest(kind, changed) != committed  # a changed value without `make k8s` fails above


# --- Only the API is open (issue 24): the NetworkPolicy, Ray's token authentication, locked-down pods. ---
# No policy linter on PyPI or in Debian reads the pod templates inside a RayService, so these checks are
# our own reading, with Kubernetes' semantics; the NetworkPolicy itself is validated with Kubernetes' schema.

def _pod_templates(service: dict) -> list[dict]:
    cluster = service["spec"]["rayClusterConfig"]
    return [cluster["headGroupSpec"]["template"], *(group["template"] for group in cluster["workerGroupSpecs"])]


def _check_container_is_locked_down(context: dict) -> None:
    assert context.get("runAsNonRoot") is True
    assert context.get("allowPrivilegeEscalation") is False
    assert context.get("capabilities") == {"drop": ["ALL"]}  # and none added
    assert context.get("seccompProfile") == {"type": "RuntimeDefault"}
    assert not context.get("privileged")
    assert context.get("runAsUser", generate.RAY_UID) != 0


def check_pods_are_locked_down(service: dict) -> None:
    """Non-root, no privilege escalation, no capabilities, the runtime's seccomp profile, nothing of the
    host, resource limits: every pod template and every container, the autoscaler KubeRay adds included."""
    cluster = service["spec"]["rayClusterConfig"]
    for template in _pod_templates(service):
        pod = template["spec"]
        security = pod.get("securityContext", {})
        assert security.get("runAsNonRoot") is True
        assert (security.get("runAsUser"), security.get("runAsGroup")) == (generate.RAY_UID, generate.RAY_GID)
        assert security.get("seccompProfile") == {"type": "RuntimeDefault"}
        assert not any(pod.get(key) for key in ("hostNetwork", "hostPID", "hostIPC"))
        assert not any("hostPath" in volume for volume in pod["volumes"])
        for container in pod["containers"] + pod.get("initContainers", []):
            _check_container_is_locked_down(container.get("securityContext", {}))
            assert {"cpu", "memory"} <= set(container["resources"].get("limits", {})), container["name"]
            assert not any("hostPort" in port for port in container.get("ports", []))
    _check_container_is_locked_down(cluster["autoscalerOptions"].get("securityContext", {}))


def check_token_authentication(service: dict) -> None:
    """KubeRay's authOptions: the operator puts RAY_AUTH_MODE=token and the Secret's token in every Ray
    container and authenticates to the dashboard itself; nothing in the pods turns it off."""
    auth = service["spec"]["rayClusterConfig"].get("authOptions", {})
    assert auth.get("mode") == "token"
    assert auth.get("secretName") == generate.RAY_TOKEN_SECRET
    assert not auth.get("enableK8sTokenAuth")  # Kubernetes-delegated tokens: KubeRay has them for RayClusters only
    for template in _pod_templates(service):
        for container in template["spec"]["containers"]:
            names = {env["name"] for env in container["env"]}
            assert not names & {"RAY_AUTH_MODE", "RAY_AUTH_TOKEN"}, container["name"]


def _selects(selector: dict, labels: dict) -> bool:
    assert set(selector) <= {"matchLabels"}, selector  # what the manifests use, and all this reader knows
    return all(labels.get(key) == value for key, value in selector.get("matchLabels", {}).items())


def admits(policy: dict, namespace: dict, pod: dict, source_namespace: dict, source: dict, port: int) -> bool:
    """Whether `policy`, applied in `namespace`, lets a pod labelled `source` in `source_namespace` open a
    TCP connection to `port` of a pod labelled `pod` in `namespace` (namespaces given by their labels).
    Kubernetes' rules: a pod no policy selects takes everything; else a rule admits it when one of its
    peers (none: any) and one of its ports (none: any) match; a peer's podSelector alone means pods of the
    policy's namespace, with a namespaceSelector pods of the namespaces it selects."""
    spec = policy["spec"]
    if not _selects(spec["podSelector"], pod) or "Ingress" not in spec.get("policyTypes", ["Ingress"]):
        return True
    for rule in spec.get("ingress", []):
        peers = rule.get("from") or [{}]
        ports = rule.get("ports") or [{}]
        for peer in peers:
            assert "ipBlock" not in peer, peer
            in_namespace = (_selects(peer["namespaceSelector"], source_namespace) if "namespaceSelector" in peer
                            else not peer or source_namespace == namespace)
            if not (in_namespace and _selects(peer.get("podSelector", {}), source)):
                continue
            for allowed in ports:
                assert allowed.get("protocol", "TCP") == "TCP" and isinstance(allowed.get("port", 0), int), allowed
                if "port" not in allowed or allowed["port"] <= port <= allowed.get("endPort", allowed["port"]):
                    return True
    return False


def check_only_the_api_is_open(objects: dict[str, dict]) -> None:
    assert "NetworkPolicy" in objects, "the manifest has no NetworkPolicy: every port of every pod is open"
    service, policy = objects["RayService"], objects["NetworkPolicy"]
    name = service["metadata"]["name"]
    serve_port = yaml.safe_load(service["spec"]["serveConfigV2"])["http_options"]["port"]
    head = service["spec"]["rayClusterConfig"]["headGroupSpec"]
    head_ports = {port["name"]: port["containerPort"] for port in head["template"]["spec"]["containers"][0]["ports"]}
    assert head_ports["serve"] == serve_port and head_ports["dashboard"] == generate.DASHBOARD_PORT
    # Ray's ports: those the head declares, the dashboard agent's, and one a worker process picked at random
    ray_ports = {*head_ports.values(), 52365, 23456} - {serve_port}
    here = {"kubernetes.io/metadata.name": "ocr"}
    elsewhere = {"kubernetes.io/metadata.name": "someone-elses"}
    operator_namespace = {"kubernetes.io/metadata.name": generate.OPERATOR_NAMESPACE}
    operator = dict(generate.OPERATOR_POD_LABELS)
    # the pods as KubeRay labels them: its own labels (ray.io/cluster changes with each cluster of an
    # upgrade) beside those of the manifest's templates
    pods = [{"ray.io/cluster": f"{name}-x7k2p", "ray.io/node-type": "worker" if index else "head",
             "app.kubernetes.io/name": "kuberay", **template.get("metadata", {}).get("labels", {})}
            for index, template in enumerate(_pod_templates(service))]
    assert len(pods) >= 2
    other_service = {"ray.io/cluster": "other-x", generate.SERVICE_LABEL: name + "-other"}
    for pod in pods:
        for source_namespace, source in [(elsewhere, {}), (here, {}), (here, other_service), (elsewhere, operator),
                                         (here, operator), (elsewhere, pods[0])]:
            assert admits(policy, here, pod, source_namespace, source, serve_port), (source_namespace, source)
            for port in ray_ports:
                assert not admits(policy, here, pod, source_namespace, source, port), (source_namespace, source, port)
        for source in pods:  # the service's own pods: every port, both ways
            for port in {serve_port, *ray_ports}:
                assert admits(policy, here, pod, here, source, port), (source, port)
        # the operator: the dashboard (and the Serve port, where it checks the head's proxy), no other
        for port in ray_ports:
            assert admits(policy, here, pod, operator_namespace, operator, port) == (port == generate.DASHBOARD_PORT)
        assert not admits(policy, here, pod, operator_namespace, {"app.kubernetes.io/name": "other"},
                          generate.DASHBOARD_PORT)


@pytest.fixture(scope="module")
def network_policy_schema():
    return json.loads(NETWORK_POLICY_SCHEMA.read_text())


@pytest.mark.parametrize("kind", generate.CLUSTERS)
def test_only_the_api_is_open_and_ray_is_authenticated_and_locked_down(network_policy_schema, kind):
    objects = manifest_objects(kind)
    assert set(objects) == {"RayService", "NetworkPolicy"}  # one `kubectl apply -f` brings both
    jsonschema.validate(objects["NetworkPolicy"], network_policy_schema)
    check_only_the_api_is_open(objects)
    check_token_authentication(objects["RayService"])
    check_pods_are_locked_down(objects["RayService"])


def test_strict_network_policy_validation_catches_misspelled_fields(network_policy_schema):
    policy = manifest_objects("cpu")["NetworkPolicy"]
    policy["spec"]["ingress"][2]["from"][0]["namespaceSelecter"] = policy["spec"]["ingress"][2]["from"][0].pop(
        "namespaceSelector")
    with pytest.raises(jsonschema.ValidationError, match="namespaceSelecter"):
        jsonschema.validate(policy, network_policy_schema)


def _cluster(objects):
    return objects["RayService"]["spec"]["rayClusterConfig"]


def _worker_pod(objects):
    return _cluster(objects)["workerGroupSpecs"][0]["template"]["spec"]


def _head_pod(objects):
    return _cluster(objects)["headGroupSpec"]["template"]["spec"]


WEAKENINGS = {
    "no NetworkPolicy": lambda o: o.pop("NetworkPolicy"),
    "the dashboard open to all": lambda o: o["NetworkPolicy"]["spec"]["ingress"].append(
        {"ports": [{"protocol": "TCP", "port": generate.DASHBOARD_PORT}]}),
    "every port open to all": lambda o: o["NetworkPolicy"]["spec"]["ingress"][0].pop("ports"),
    "the operator's label in any namespace": lambda o: o["NetworkPolicy"]["spec"]["ingress"][2]["from"][0].pop(
        "namespaceSelector"),
    "any pod of the namespace": lambda o: o["NetworkPolicy"]["spec"]["ingress"][1]["from"][0].update(podSelector={}),
    "workers not selected": lambda o: _cluster(o)["workerGroupSpecs"][0]["template"].pop("metadata"),
    "only the egress isolated": lambda o: o["NetworkPolicy"]["spec"].update(policyTypes=["Egress"]),
    "no authOptions": lambda o: _cluster(o).pop("authOptions"),
    "authentication disabled": lambda o: _cluster(o)["authOptions"].update(mode="disabled"),
    "turned off in a pod": lambda o: _head_pod(o)["containers"][0]["env"].append(
        {"name": "RAY_AUTH_MODE", "value": "disabled"}),
    "no pod securityContext": lambda o: _worker_pod(o).pop("securityContext"),
    "root allowed": lambda o: _head_pod(o)["securityContext"].update(runAsNonRoot=False),
    "no pod seccomp": lambda o: _worker_pod(o)["securityContext"].pop("seccompProfile"),
    "no container securityContext": lambda o: _head_pod(o)["containers"][0].pop("securityContext"),
    "privilege escalation": lambda o: _worker_pod(o)["containers"][0]["securityContext"].update(
        allowPrivilegeEscalation=True),
    "capabilities kept": lambda o: _head_pod(o)["containers"][0]["securityContext"].pop("capabilities"),
    "a capability added": lambda o: _worker_pod(o)["containers"][0]["securityContext"]["capabilities"].update(
        add=["NET_ADMIN"]),
    "container seccomp unconfined": lambda o: _head_pod(o)["containers"][0]["securityContext"].update(
        seccompProfile={"type": "Unconfined"}),
    "autoscaler not locked down": lambda o: _cluster(o)["autoscalerOptions"].pop("securityContext"),
    "no limits": lambda o: _worker_pod(o)["containers"][0]["resources"].pop("limits"),
    "host network": lambda o: _worker_pod(o).update(hostNetwork=True),
}


@pytest.mark.parametrize("weakening", WEAKENINGS, ids=str)
def test_the_checks_fail_when_the_manifest_is_weakened(weakening):
    objects = copy.deepcopy(manifest_objects("gpu"))
    WEAKENINGS[weakening](objects)
    with pytest.raises(AssertionError):
        check_only_the_api_is_open(objects)
        check_token_authentication(objects["RayService"])
        check_pods_are_locked_down(objects["RayService"])


def test_the_database_url_comes_from_the_config_then_the_environment_then_the_data_folder(tmp_path, monkeypatch):
    monkeypatch.delenv(DATABASE_URL_ENV, raising=False)
    assert AppArgs(data_dir=tmp_path).resolved_database_url == f"sqlite:///{tmp_path}/ocr_translate_serve.sqlite3"
    monkeypatch.setenv(DATABASE_URL_ENV, "postgresql+psycopg://app:secret@db:5432/ocr")
    assert AppArgs(data_dir=tmp_path).resolved_database_url == "postgresql+psycopg://app:secret@db:5432/ocr"
    assert AppArgs(database_url="sqlite:///x.db").resolved_database_url == "sqlite:///x.db"


def test_the_data_folder_comes_from_the_environment_else_the_users_share_folder(monkeypatch, tmp_path):
    monkeypatch.delenv("OCR_SERVE_DATA_DIR", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert default_data_dir() == tmp_path / ".local" / "share" / "ocr-translate-serve"
    monkeypatch.setenv("OCR_SERVE_DATA_DIR", str(tmp_path / "elsewhere"))
    assert default_data_dir() == tmp_path / "elsewhere" == AppArgs().data_dir


@pytest.mark.parametrize("path", CONFIGS, ids=lambda path: path.name)
def test_every_deployment_declares_its_memory_and_requests_time_out(path):
    """Ray places replicas by declared memory, so a node is not overcommitted until the OOM killer acts."""
    config = load(path)
    assert config["http_options"]["request_timeout_s"] > 0
    for deployment in config["applications"][0]["deployments"]:
        assert deployment["ray_actor_options"]["memory"] >= 256 * 2**20, deployment["name"]
