"""The Serve configs and the KubeRay manifests: valid for Ray and KubeRay, and in agreement."""

from pathlib import Path

import jsonschema
import pytest
import yaml
from ray.serve.config import AutoscalingConfig
from ray.serve.schema import ServeDeploySchema

import graph
from core.settings import DATABASE_URL_ENV, AppArgs, default_data_dir
from deployments.proxy_errors import PROXY_CALLBACK, PROXY_CALLBACK_ENV
from k8s import generate
from models_registry import Registry

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted((ROOT / "configs").glob("*.yaml"))
CRD = Path(__file__).resolve().parent / "kuberay" / "ray.io_rayservices.yaml"
"""KubeRay's RayService CRD, vendored with its Apache-2.0 licence (LICENSE.kuberay beside it)."""


def load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


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
    for model_id in (defaults.box_model, defaults.ocr_model, defaults.tsl_model):
        assert registry.availability(model_id).usable, (model_id, registry.availability(model_id).reason)
    assert registry.get(defaults.ocr_model).reads_language(defaults.lang_src)
    assert registry.get(defaults.tsl_model).translates(defaults.lang_src, defaults.lang_dst)


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
    manifest = load(generate.path_of(kind))
    jsonschema.validate(manifest, rayservice_schema)
    cluster = manifest["spec"]["rayClusterConfig"]
    assert cluster["rayVersion"] == "2.60.0" and cluster["enableInTreeAutoscaling"] is True
    for pod in (cluster["headGroupSpec"]["template"]["spec"], cluster["workerGroupSpecs"][0]["template"]["spec"]):
        [container] = pod["containers"]
        secrets = {env["name"]: env["valueFrom"]["secretKeyRef"]["name"]
                   for env in container["env"] if "valueFrom" in env}
        assert secrets == dict.fromkeys(["OCR_SERVE_DATABASE_URL", "OCR_SERVE_API_TOKEN"], "ocr-translate-serve")
        values = {env["name"]: env["value"] for env in container["env"] if "value" in env}
        assert values == {PROXY_CALLBACK_ENV: PROXY_CALLBACK}  # every node's proxy answers a lost ingress in JSON
        assert {"name": "models", "mountPath": "/models", "readOnly": True} in container["volumeMounts"]
    worker = cluster["workerGroupSpecs"][0]["template"]["spec"]["containers"][0]
    assert ("nvidia.com/gpu" in worker["resources"]["limits"]) == (kind == "gpu")


def test_strict_crd_validation_catches_misspelled_fields(rayservice_schema):
    manifest = load(generate.path_of("gpu"))
    manifest["spec"]["rayClusterConfig"]["enableInTreeAutoscalling"] = True
    with pytest.raises(jsonschema.ValidationError, match="enableInTreeAutoscalling"):
        jsonschema.validate(manifest, rayservice_schema)


@pytest.mark.parametrize("kind", generate.CLUSTERS)
def test_kuberay_manifests_are_generated_from_the_configs_without_drift(kind):
    config_path = ROOT / "configs" / generate.CLUSTERS[kind]["config"]
    committed = generate.path_of(kind).read_text()
    assert committed == generate.manifest(kind), f"{config_path.name} changed: run `make k8s`"
    embedded = yaml.safe_load(load(generate.path_of(kind))["spec"]["serveConfigV2"])
    assert embedded == load(config_path)
    ServeDeploySchema.model_validate(embedded)
    changed = config_path.read_text().replace("max_ongoing_requests: 200", "max_ongoing_requests: 300")
    assert generate.manifest(kind, changed) != committed  # a changed value without `make k8s` fails above


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
