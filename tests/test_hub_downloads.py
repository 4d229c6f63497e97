"""Models on demand: Hugging Face weights fetched into the Hugging Face cache when a model is selected,
in the background, from a local server that answers as the hub does (`tests/fake_hub.py`).

The downloads themselves are tested here without Ray, then the whole story through real HTTP on the
real app: a second application of the test cluster whose ingress is online (`HF_ENDPOINT` at the local
hub, `HF_HUB_OFFLINE=0`) while its Translator stays offline and only reads the shared cache.
"""

import contextlib
import re
import threading
import time
from pathlib import Path

import httpx
import pytest

import graph
from core.errors import ModelLoadError
from core.options import resolve
from core.settings import AppArgs, WeightSources
from models_registry import Registry
from models_registry.hub_downloads import HubDownloads, cached_snapshot

from .conftest import AUTH, LiveServer, second_app
from .fake_hub import COMMIT, FakeHub
from .tiny_hf import OCR_JA, _entry, build_marian

HUB_MODEL, BROKEN_MODEL = "tiny-hub/marian-ja-en", "tiny-hub/marian-broken"
WEIGHTS = "model.safetensors"
HUB_APP, HUB_PREFIX = "ocr_translate_hub", "/hub"


@pytest.fixture(scope="module")
def hub_models(tmp_path_factory) -> tuple[Path, Path]:
    """The hub's repositories (tiny Marian models) and their registry entries."""
    models, entries = tmp_path_factory.mktemp("hub-models"), tmp_path_factory.mktemp("hub-entries")
    build_marian(models / HUB_MODEL, seed=11)
    build_marian(models / BROKEN_MODEL, seed=12)
    pair = "\n  languages_dst: [en]\n  settings: {compute_type: float32}"
    (entries / "hub.yaml").write_text("".join(_entry(repo, "tsl", "[ja]", pair) for repo in (HUB_MODEL, BROKEN_MODEL)))
    return models, entries


@pytest.fixture
def hub(hub_models):
    models, _ = hub_models
    server = FakeHub({repo: models / repo for repo in (HUB_MODEL, BROKEN_MODEL)})
    yield server
    server.close()


@pytest.fixture
def hf_cache(tmp_path, monkeypatch):
    """An empty Hugging Face cache, and huggingface_hub allowed online (conftest sets it offline)."""
    from huggingface_hub import constants

    cache = tmp_path / "hf-cache"
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    return cache


def wait_for(condition, timeout_s: float = 60, what: str = "the condition"):
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout_s} s")
        time.sleep(0.1)


def test_local_config_fetches_models_on_demand_and_cluster_configs_do_not():
    assert AppArgs.model_validate(graph.read_config(graph.LOCAL_CONFIG)[0]).weights.hub_downloads
    for name in ("cluster.yaml", "gpu.yaml"):
        args = AppArgs.model_validate(graph.read_config(graph.LOCAL_CONFIG.parent / name)[0])
        assert not args.weights.hub_downloads, name


def test_a_download_runs_in_the_background_with_its_progress(hub, hub_models, hf_cache, caplog):
    caplog.set_level("INFO", logger="models_registry.hub_downloads")
    released = hub.stalled[(HUB_MODEL, WEIGHTS)] = threading.Event()
    downloads = HubDownloads(endpoint=hub.url, report_every_s=0.2)
    started = downloads.start(HUB_MODEL)
    assert started.state == "downloading"
    total = hub.size(HUB_MODEL)
    halfway = wait_for(lambda: (d := downloads.state(HUB_MODEL)).bytes_total and d.bytes_done and d, what="progress")
    assert halfway.state == "downloading" and halfway.bytes_total == total and 0 < halfway.bytes_done < total
    assert 0 <= halfway.percent < 100 and f"of {total / 1e6:.1f} MB" in halfway.describe()
    assert cached_snapshot(HUB_MODEL) is None  # nothing loadable while the weights are on their way
    assert downloads.start(HUB_MODEL).state == "downloading"  # one download per repository
    progress = re.compile(rf"downloading {HUB_MODEL}: (\d+)% of {total / 1e6:.1f} MB")
    logged = wait_for(lambda: [int(m[1]) for r in caplog.records if (m := progress.search(r.getMessage()))
                               and int(m[1]) > 0], 10, "a log line with the progress")
    assert logged[-1] < 100  # the progress, in the log while it runs
    released.set()
    done = wait_for(lambda: (d := downloads.state(HUB_MODEL)).state == "done" and d, what="the download")
    assert done.bytes_done == total and done.percent == 100 and done.error is None
    assert (cached_snapshot(HUB_MODEL) / WEIGHTS).read_bytes() == (hub_models[0] / HUB_MODEL / WEIGHTS).read_bytes()
    gets = [request for request in hub.requests if request.startswith("GET") and request.endswith(WEIGHTS)]
    assert len(gets) == 1
    assert HubDownloads(endpoint=hub.url).start(HUB_MODEL).state == "done"  # found in the cache: no download


def test_a_download_that_fails_halfway_never_leaves_a_loadable_model(hub, hub_models, hf_cache):
    hub.broken.add((BROKEN_MODEL, WEIGHTS))
    registry = Registry.load([hub_models[1]], WeightSources(hub_downloads=True))
    assert registry.availability(BROKEN_MODEL).download == BROKEN_MODEL
    downloads = HubDownloads(endpoint=hub.url)
    downloads.start(BROKEN_MODEL)
    failed = wait_for(lambda: (d := downloads.state(BROKEN_MODEL)).state == "failed" and d, what="the failure")
    assert "500" in failed.error and failed.percent < 100
    snapshot = hf_cache / "models--tiny-hub--marian-broken" / "snapshots" / COMMIT
    assert (snapshot / "config.json").is_file() and not (snapshot / WEIGHTS).exists()  # half a model is there
    assert cached_snapshot(BROKEN_MODEL) is None
    with pytest.raises(ModelLoadError, match="not"):
        registry.load_backend(BROKEN_MODEL, "tsl")

    hub.repair(BROKEN_MODEL, WEIGHTS)
    assert downloads.start(BROKEN_MODEL).state == "downloading"  # selecting it again retries
    wait_for(lambda: downloads.state(BROKEN_MODEL).state == "done", what="the retried download")
    backend = registry.load_backend(BROKEN_MODEL, "tsl")  # the registry looks again once they are here
    assert backend.source == str(snapshot)
    assert backend.translate(["猫が好きです"], "ja", "en", {"max_new_tokens": 4, "num_beams": 1})


# -- through the real app ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def app_hub(hub_models):
    models, _ = hub_models
    server = FakeHub({repo: models / repo for repo in (HUB_MODEL, BROKEN_MODEL)})
    yield server
    server.close()


@pytest.fixture(scope="module")
def hub_app(live: LiveServer, app_hub, hub_models, tmp_path_factory):
    """A second application with `hub_downloads` on; its ingress reaches the local hub, its Translator
    is offline and reads the same Hugging Face cache. The session's tiny models (a Japanese OCR model
    among them) are there too, from their models folder."""
    import ray

    from deployments.model_downloads import ACTOR_NAME
    from deployments.status_board import NAMESPACE

    folder = tmp_path_factory.mktemp("hub-app")
    hf_home = folder / "hf-home"
    cache_only = {"HF_HOME": str(hf_home)}
    online = {**cache_only, "HF_ENDPOINT": app_hub.url, "HF_HUB_OFFLINE": "0"}
    options = {"Ingress": {"ray_actor_options": {"num_cpus": 0.05, "runtime_env": {"env_vars": online}}},
               "Translator": {"ray_actor_options": {"num_cpus": 0.05, "runtime_env": {"env_vars": cache_only}}}}
    args = {"registry_dirs": [str(hub_models[1]), *live.app_args["registry_dirs"]],
            "weights": {"hub_downloads": True, "models_dirs": live.app_args["weights"]["models_dirs"]},
            "default_selection": {}, "preload_selected_models": False}
    try:
        with (second_app(live, HUB_APP, HUB_PREFIX, folder / "data", options, **args) as url,
              httpx.Client(base_url=url, headers=AUTH, timeout=120) as http):
            wait_for(lambda: http.get("/").status_code == 200, what="the hub app's start")
            yield http, hf_home / "hub"
    finally:  # the application's detached downloads actor goes with it
        with contextlib.suppress(ValueError):  # never created
            ray.kill(ray.get_actor(f"{ACTOR_NAME}:{HUB_APP}", namespace=NAMESPACE))


def _translator_loads(model_id: str) -> int:
    from ray import serve

    stats = serve.get_deployment_handle("Translator", app_name=HUB_APP).stats.remote().result()
    return stats["loads"].get(model_id, 0)


def _downloading_percent(response: httpx.Response) -> int:
    assert response.status_code == 513, response.text
    match = re.search(r"is downloading \((\d+)%", response.json()["error"])
    assert match, response.text
    return int(match[1])


def _logged(live, line: str) -> bool:
    return any(line in path.read_text(errors="replace") for path in (live.session_dir / "logs").glob("worker-*"))


@pytest.mark.serve
def test_a_selected_model_downloads_in_the_background_and_serves_once_complete(live, app_hub, hub_app, hub_models):
    http, cache = hub_app
    hub = app_hub
    released = hub.stalled[(HUB_MODEL, WEIGHTS)] = threading.Event()
    assert http.post("/set_lang/", json={"lang_src": "ja", "lang_dst": "en"}).status_code == 200
    assert HUB_MODEL in http.get("/").json()["TSLModels"]  # offered before its weights are here
    assert http.get("/status").json()["downloads"] == {}  # and nothing is fetched before it is selected
    assert not [request for request in hub.requests if HUB_MODEL in request]

    started = time.monotonic()
    response = http.post("/set_models/", json={"tsl_model_id": HUB_MODEL})
    assert response.status_code == 202, response.text
    assert time.monotonic() - started < 10  # answered at once, not after the download
    assert f"Model {HUB_MODEL!r} is downloading" in response.json()["message"]
    assert http.get("/").json()["tsl_selected"] == HUB_MODEL

    _downloading_percent(http.post("/run_tsl/", json={"text": "猫が好きです"}))
    image = {"contents": "aGVsbG8=", "box_model_id": "easyocr/craft", "ocr_model_id": OCR_JA}
    _downloading_percent(http.post("/run_ocrtsl/", json=image))
    total = hub.size(HUB_MODEL)
    status = wait_for(lambda: (d := http.get("/status").json()["downloads"].get(HUB_MODEL)) and d["bytes"] and d,
                      what="progress on /status")
    assert status["state"] == "downloading" and status["total_bytes"] == total and 0 < status["bytes"] < total
    assert status["percent"] <= _downloading_percent(http.post("/run_tsl/", json={"text": "猫が好きです"})) < 100
    assert _translator_loads(HUB_MODEL) == 0

    released.set()
    translated = wait_for(lambda: (r := http.post("/run_tsl/", json={"text": "猫が好きです"})).status_code == 200 and r,
                          what="the first translation")
    direct = Registry.load([hub_models[1]], WeightSources(models_dirs=[hub_models[0]])).load_backend(HUB_MODEL, "tsl")
    options = resolve(direct.entry.option_specs, None)
    assert translated.json()["text"] == direct.translate(["猫が好きです"], "ja", "en", options)[0]
    status = http.get("/status").json()["downloads"][HUB_MODEL]
    assert (status["state"], status["percent"], status["bytes"], status["error"]) == ("done", 100, total, None)
    assert _translator_loads(HUB_MODEL) == 1
    assert (cache / "models--tiny-hub--marian-ja-en" / "snapshots" / COMMIT / WEIGHTS).is_file()
    assert wait_for(lambda: _logged(live, f"downloaded {HUB_MODEL} ("), 10, "the log line")
    assert _logged(live, f"downloading {HUB_MODEL} from {hub.url}")


@pytest.mark.serve
def test_a_failed_download_is_reported_never_loads_and_is_retried_on_the_next_selection(live, app_hub, hub_app):
    from ray import serve

    http, cache = hub_app
    hub = app_hub
    hub.broken.add((BROKEN_MODEL, WEIGHTS))
    assert http.post("/set_lang/", json={"lang_src": "ja", "lang_dst": "en"}).status_code == 200
    assert http.post("/set_models/", json={"tsl_model_id": BROKEN_MODEL}).status_code == 202
    failed = wait_for(lambda: (d := http.get("/status").json()["downloads"].get(BROKEN_MODEL))
                      and d["state"] == "failed" and d, what="the failure on /status")
    assert "500" in failed["error"] and failed["percent"] < 100
    response = http.post("/run_tsl/", json={"text": "猫が好きです"})
    assert response.status_code == 513
    assert f"The download of model {BROKEN_MODEL!r} failed: " in response.json()["error"]
    assert "set_models" in response.json()["error"]
    assert "<td>failed</td>" in http.get("/status", headers={"Accept": "text/html"}).text

    snapshot = cache / "models--tiny-hub--marian-broken" / "snapshots" / COMMIT
    assert (snapshot / "config.json").is_file() and not (snapshot / WEIGHTS).exists()
    translator = serve.get_deployment_handle("Translator", app_name=HUB_APP)
    with pytest.raises(Exception, match="cannot be loaded"):  # the model replica refuses the half model too
        translator.options(multiplexed_model_id=BROKEN_MODEL).warm.remote().result()
    assert _translator_loads(BROKEN_MODEL) == 0
    assert _logged(live, f"the download of {BROKEN_MODEL} failed")

    hub.repair(BROKEN_MODEL, WEIGHTS)
    assert http.post("/set_models/", json={"tsl_model_id": BROKEN_MODEL}).status_code == 202  # retried
    wait_for(lambda: http.post("/run_tsl/", json={"text": "猫が好きです"}).status_code == 200, what="the retry")
    assert http.get("/status").json()["downloads"][BROKEN_MODEL]["state"] == "done"
    assert _translator_loads(BROKEN_MODEL) == 1
