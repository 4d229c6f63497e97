"""Models on demand: Hugging Face weights fetched into the Hugging Face cache when a model is selected,
in the background, from a local server that answers as the hub does (`tests/support/fake_hub.py`).

The downloads themselves are tested here without Ray (the commit fetched, the files chosen, the size
and free disk checks, the reasons clients are shown), then the whole story through real HTTP on the
real app: a second application of the test cluster whose ingress is online (`HF_ENDPOINT` at the local
hub, `HF_HUB_OFFLINE=0`) while its Translator stays offline and only reads the shared cache.
"""

import contextlib
import logging
import re
import shutil
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
from models_registry.hub_downloads import Download, DownloadRules, HubDownloads, cached_snapshot, choose_files
from tests.support.fake_hub import COMMIT, FakeHub
from tests.support.live import AUTH, LiveServer, second_app
from tests.support.ports import free_port
from tests.support.tiny_hf import OCR_JA, _entry, build_marian
from tests.support.waiting import wait_for

HUB_MODEL, BROKEN_MODEL = "tiny-hub/marian-ja-en", "tiny-hub/marian-broken"
TWO_FORMATS, BIN_ONLY = "tiny-hub/marian-two-formats", "tiny-hub/marian-bin"
"""Safetensors beside pickled weights and other frameworks' files; PyTorch .bin weights only."""
REPOS = (HUB_MODEL, BROKEN_MODEL, TWO_FORMATS, BIN_ONLY)
OTHER_COMMIT = "fedcba9876543210fedcba9876543210fedcba98"
"""A second commit of HUB_MODEL (other weights); main stays at COMMIT."""
WEIGHTS = "model.safetensors"
HUB_APP, HUB_PREFIX = "ocr_translate_hub", "/hub"
ALL_ALLOWED = DownloadRules(max_bytes=10**12, free_disk_margin_bytes=0, allow_unpinned=True)


def write_entries(folder: Path, repos, revision: str | None = COMMIT) -> Path:
    """Translation entries of the hub's tiny Marian models, pinned to `revision` (None: unpinned)."""
    folder.mkdir(parents=True, exist_ok=True)
    pair = "\n  languages_dst: [en]\n  settings: {compute_type: float32}"
    text = "".join(_entry(repo, "tsl", "[ja]", pair) for repo in repos)
    if revision:
        text = re.sub(r"weights: \{repo: ([^}]+)\}", rf"weights: {{repo: \1, revision: '{revision}'}}", text)
    (folder / "hub.yaml").write_text(text)
    return folder


@pytest.fixture(scope="module")
def hub_models(tmp_path_factory) -> tuple[Path, Path]:
    """The hub's repositories (tiny Marian models; HUB_MODEL's second commit under other/) and their
    registry entries, pinned to COMMIT."""
    import torch
    from transformers import MarianMTModel

    models, entries = tmp_path_factory.mktemp("hub-models"), tmp_path_factory.mktemp("hub-entries")
    build_marian(models / HUB_MODEL, seed=11)
    build_marian(models / BROKEN_MODEL, seed=12)
    build_marian(models / "other" / HUB_MODEL, seed=13)
    two = build_marian(models / TWO_FORMATS, seed=14)
    for name in ("pytorch_model.bin", "training_args.bin", "optimizer.pt", "tf_model.h5", "onnx/model.onnx"):
        (two / name).parent.mkdir(exist_ok=True)
        (two / name).write_bytes(b"not to be fetched" * 100)
    bin_only = build_marian(models / BIN_ONLY, seed=15)
    torch.save(MarianMTModel.from_pretrained(bin_only).state_dict(), bin_only / "pytorch_model.bin")
    (bin_only / WEIGHTS).unlink()
    (bin_only / "rng_state.pth").write_bytes(b"not to be fetched" * 100)
    write_entries(entries, REPOS)
    return models, entries


@pytest.fixture
def hub(hub_models):
    models, _ = hub_models
    server = FakeHub({repo: models / repo for repo in REPOS}, {HUB_MODEL: {OTHER_COMMIT: models / "other" / HUB_MODEL}})
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




def test_local_config_fetches_models_on_demand_and_cluster_configs_do_not():
    assert AppArgs.model_validate(graph.read_config(graph.LOCAL_CONFIG)[0]).weights.hub_downloads
    for name in ("cluster.yaml", "gpu.yaml"):
        args = AppArgs.model_validate(graph.read_config(graph.LOCAL_CONFIG.parent / name)[0])
        assert not args.weights.hub_downloads, name


def finished(downloads: HubDownloads, repo: str) -> Download:
    return wait_for(lambda: (d := downloads.state(repo)).state != "downloading" and d, what=f"the end of {repo}")


def snapshot_files(cache: Path, repo: str, commit: str = COMMIT) -> set[str]:
    folder = cache / f"models--{repo.replace('/', '--')}" / "snapshots" / commit
    return {str(path.relative_to(folder)) for path in folder.rglob("*") if path.is_file()}


def assert_fit_for_clients(error: str, repo: str, *private: str) -> None:
    """A download's error names the repository and a reason, never a URL, a path or a folder of this machine."""
    assert error.startswith(f"{repo}: "), error
    assert "http" not in error.lower() and "127.0.0.1" not in error, error
    assert "/" not in error.removeprefix(f"{repo}: "), error  # the repository id is the only "/" in it
    for text in private:
        assert text not in error, (text, error)


def test_a_download_runs_in_the_background_with_its_progress(hub, hub_models, hf_cache, caplog):
    caplog.set_level("INFO", logger="models_registry.hub_downloads")
    released = hub.stalled[(HUB_MODEL, WEIGHTS)] = threading.Event()
    downloads = HubDownloads(endpoint=hub.url, report_every_s=0.2)
    started = downloads.start(HUB_MODEL, COMMIT)
    assert started.state == "downloading"
    total = hub.size(HUB_MODEL)
    halfway = wait_for(lambda: (d := downloads.state(HUB_MODEL)).bytes_total and d.bytes_done and d, what="progress")
    assert halfway.state == "downloading" and halfway.bytes_total == total and 0 < halfway.bytes_done < total
    assert 0 <= halfway.percent < 100 and f"of {total / 1e6:.1f} MB" in halfway.describe()
    assert cached_snapshot(HUB_MODEL, COMMIT) is None  # nothing loadable while the weights are on their way
    assert downloads.start(HUB_MODEL, COMMIT).state == "downloading"  # one download per repository
    progress = re.compile(rf"downloading {HUB_MODEL}: (\d+)% of {total / 1e6:.1f} MB")
    logged = wait_for(lambda: [int(m[1]) for r in caplog.records if (m := progress.search(r.getMessage()))
                               and int(m[1]) > 0], 10, "a log line with the progress")
    assert logged[-1] < 100  # the progress, in the log while it runs
    released.set()
    done = wait_for(lambda: (d := downloads.state(HUB_MODEL)).state == "done" and d, what="the download")
    assert done.bytes_done == total and done.percent == 100 and done.error is None and done.revision == COMMIT
    fetched = cached_snapshot(HUB_MODEL, COMMIT) / WEIGHTS
    assert fetched.read_bytes() == (hub_models[0] / HUB_MODEL / WEIGHTS).read_bytes()
    gets = [request for request in hub.requests if request.startswith("GET") and request.endswith(WEIGHTS)]
    assert len(gets) == 1
    assert HubDownloads(endpoint=hub.url).start(HUB_MODEL, COMMIT).state == "done"  # in the cache: no download


def test_a_download_that_fails_halfway_never_leaves_a_loadable_model(hub, hub_models, hf_cache, caplog):
    hub.broken.add((BROKEN_MODEL, WEIGHTS))
    registry = Registry.load([hub_models[1]], WeightSources(hub_downloads=True))
    assert registry.availability(BROKEN_MODEL).download == BROKEN_MODEL
    downloads = HubDownloads(endpoint=hub.url)
    downloads.start(BROKEN_MODEL, COMMIT)
    failed = wait_for(lambda: (d := downloads.state(BROKEN_MODEL)).state == "failed" and d, what="the failure")
    assert failed.error == f"{BROKEN_MODEL}: the hub answered with status 500" and failed.percent < 100
    assert_fit_for_clients(failed.error, BROKEN_MODEL, str(hf_cache), hf_cache.parent.name, hub.url)
    logged = [record for record in caplog.records if record.getMessage().startswith(f"the download of {BROKEN_MODEL}")]
    assert logged and logged[-1].exc_info and hub.url in caplog.text  # the whole exception is in the log
    snapshot = hf_cache / "models--tiny-hub--marian-broken" / "snapshots" / COMMIT
    assert (snapshot / "config.json").is_file() and not (snapshot / WEIGHTS).exists()  # half a model is there
    assert cached_snapshot(BROKEN_MODEL, COMMIT) is None
    with pytest.raises(ModelLoadError, match="not"):
        registry.load_backend(BROKEN_MODEL, "tsl")

    hub.repair(BROKEN_MODEL, WEIGHTS)
    assert downloads.start(BROKEN_MODEL, COMMIT).state == "downloading"  # selecting it again retries
    wait_for(lambda: downloads.state(BROKEN_MODEL).state == "done", what="the retried download")
    backend = registry.load_backend(BROKEN_MODEL, "tsl")  # the registry looks again once they are here
    assert backend.source == str(snapshot)
    assert backend.translate(["猫が好きです"], "ja", "en", {"max_new_tokens": 4, "num_beams": 1})


def test_one_weight_format_is_chosen_safetensors_first():
    listing = {"config.json": 1, "tokenizer.json": 2, "model-00001-of-00002.safetensors": 3,
               "model-00002-of-00002.safetensors": 4, "model.safetensors.index.json": 5, "pytorch_model.bin": 6,
               "pytorch_model.bin.index.json": 7, "training_args.bin": 8, "optimizer.pt": 9, "tf_model.h5": 10,
               "flax_model.msgpack": 11, "onnx/encoder_model.onnx": 12, "rng_state.pth": 13, "model.ckpt": 14}
    assert choose_files(listing) == {"config.json": 1, "tokenizer.json": 2, "model-00001-of-00002.safetensors": 3,
                                     "model-00002-of-00002.safetensors": 4, "model.safetensors.index.json": 5}
    no_safetensors = {name: size for name, size in listing.items() if "safetensors" not in name}
    assert choose_files(no_safetensors) == {"config.json": 1, "tokenizer.json": 2, "pytorch_model.bin": 6,
                                            "pytorch_model.bin.index.json": 7, "training_args.bin": 8}


def test_a_download_fetches_one_weight_format_and_its_snapshot_counts_as_complete(hub, hub_models, hf_cache):
    downloads = HubDownloads(endpoint=hub.url)
    downloads.start(TWO_FORMATS, COMMIT, ALL_ALLOWED)
    done = finished(downloads, TWO_FORMATS)
    assert done.state == "done", done.error
    fetched = {request.rsplit("/resolve/", 1)[1] for request in hub.requests if request.startswith("GET /tiny-hub")}
    skipped = {"pytorch_model.bin", "training_args.bin", "optimizer.pt", "tf_model.h5", "onnx/model.onnx"}
    assert WEIGHTS in {name.removeprefix(f"{COMMIT}/") for name in fetched}
    assert not {f"{COMMIT}/{name}" for name in skipped} & fetched
    assert snapshot_files(hf_cache, TWO_FORMATS) == set(hub.files(TWO_FORMATS)) - skipped
    assert done.bytes_total == hub.size(TWO_FORMATS) - sum(hub.files(TWO_FORMATS)[name].stat().st_size
                                                           for name in skipped)
    # The cache stores the commit's whole listing, .bin included: the snapshot is complete all the same.
    snapshot = hf_cache / "models--tiny-hub--marian-two-formats" / "snapshots" / COMMIT
    assert cached_snapshot(TWO_FORMATS, COMMIT) == snapshot

    downloads.start(BIN_ONLY, COMMIT, ALL_ALLOWED)  # no safetensors: PyTorch's .bin, and nothing else pickled
    assert finished(downloads, BIN_ONLY).state == "done"
    assert "pytorch_model.bin" in snapshot_files(hf_cache, BIN_ONLY)
    assert "rng_state.pth" not in snapshot_files(hf_cache, BIN_ONLY)
    registry = Registry.load([hub_models[1]], WeightSources(hub_downloads=True))
    backend = registry.load_backend(BIN_ONLY, "tsl")
    assert backend.translate(["猫が好きです"], "ja", "en", {"max_new_tokens": 4, "num_beams": 1})


def test_a_pinned_entry_downloads_and_loads_its_commit_not_mains(hub, hub_models, hf_cache, tmp_path):
    downloads = HubDownloads(endpoint=hub.url)
    downloads.start(HUB_MODEL, COMMIT, ALL_ALLOWED)  # main's commit is in the cache already
    assert finished(downloads, HUB_MODEL).state == "done"
    (hf_cache / "models--tiny-hub--marian-ja-en" / "refs").mkdir(exist_ok=True)
    (hf_cache / "models--tiny-hub--marian-ja-en" / "refs" / "main").write_text(COMMIT)
    pinned = Registry.load([write_entries(tmp_path / "pinned", [HUB_MODEL], OTHER_COMMIT)],
                           WeightSources(hub_downloads=True))
    assert pinned.availability(HUB_MODEL).download == HUB_MODEL  # main's snapshot is not this entry's
    with pytest.raises(ModelLoadError, match="cannot be loaded yet"):
        pinned.load_backend(HUB_MODEL, "tsl")

    assert downloads.start(HUB_MODEL, OTHER_COMMIT, DownloadRules.of(pinned.weights)).state == "downloading"
    done = finished(downloads, HUB_MODEL)
    assert done.state == "done" and done.revision == OTHER_COMMIT, done.error
    assert f"GET /api/models/{HUB_MODEL}/tree/{OTHER_COMMIT}" in hub.requests
    other = hf_cache / "models--tiny-hub--marian-ja-en" / "snapshots" / OTHER_COMMIT
    assert (other / WEIGHTS).read_bytes() == (hub_models[0] / "other" / HUB_MODEL / WEIGHTS).read_bytes()
    assert (other / WEIGHTS).read_bytes() != (hub_models[0] / HUB_MODEL / WEIGHTS).read_bytes()
    assert pinned.load_backend(HUB_MODEL, "tsl").source == str(other)  # the entry's commit, not main's
    main = Registry.load([hub_models[1]], WeightSources(hub_downloads=True))  # pinned to main's commit
    assert main.load_backend(HUB_MODEL, "tsl").source == str(other.parent / COMMIT)


def test_an_unpinned_entry_downloads_only_where_allowed_and_keeps_its_first_commit(hub, hf_cache, tmp_path, caplog):
    entries = write_entries(tmp_path / "unpinned", [HUB_MODEL], revision=None)
    refused = Registry.load([entries], WeightSources(hub_downloads=True))
    availability = refused.availability(HUB_MODEL)
    assert not availability.usable and availability.download is None
    assert "pin weights.revision" in availability.reason and "allow_unpinned_downloads" in availability.reason
    downloads = HubDownloads(endpoint=hub.url)
    failed = downloads.start(HUB_MODEL, None, DownloadRules.of(refused.weights)) and finished(downloads, HUB_MODEL)
    assert failed.state == "failed" and "pins no weights.revision" in failed.error
    assert_fit_for_clients(failed.error, HUB_MODEL)
    assert hub.requests == []  # the hub is not asked

    caplog.set_level(logging.INFO, logger="models_registry.hub_downloads")
    allowed = Registry.load([entries], WeightSources(hub_downloads=True, allow_unpinned_downloads=True))
    assert allowed.availability(HUB_MODEL).download == HUB_MODEL
    downloads.start(HUB_MODEL, None, DownloadRules.of(allowed.weights))
    done = finished(downloads, HUB_MODEL)
    assert done.state == "done" and done.revision == COMMIT, done.error  # main's commit when it started
    storage = hf_cache / "models--tiny-hub--marian-ja-en"
    assert (storage / "refs" / "main").read_text() == COMMIT
    assert f"pin it in its entry (weights.revision: {COMMIT})" in caplog.text
    hub.main[HUB_MODEL] = OTHER_COMMIT  # main moves on: the commit downloaded first stays the one loaded
    requests = len(hub.requests)
    assert HubDownloads(endpoint=hub.url).start(HUB_MODEL, None, DownloadRules.of(allowed.weights)).state == "done"
    assert len(hub.requests) == requests
    assert allowed.recheck(HUB_MODEL).download is None
    assert allowed.load_backend(HUB_MODEL, "tsl").source == str(storage / "snapshots" / COMMIT)


def test_too_large_a_model_or_too_little_free_disk_is_refused_before_any_file_is_fetched(hub, hf_cache):
    total = hub.size(HUB_MODEL)
    assert DownloadRules.of(WeightSources()) == DownloadRules(8_000_000_000, 2_000_000_000, False)
    downloads = HubDownloads(endpoint=hub.url)
    downloads.start(HUB_MODEL, COMMIT, DownloadRules.of(WeightSources(max_download_bytes=100_000)))
    failed = finished(downloads, HUB_MODEL)
    assert failed.error == f"{HUB_MODEL}: larger than the limit of 100.0 kB: {total / 1e3:.1f} kB"
    assert failed.state == "failed" and failed.bytes_total is None

    free = shutil.disk_usage(hf_cache.parent).free  # the cache's folder does not exist yet: its parent's disk
    margin = free - total // 2
    downloads.start(HUB_MODEL, COMMIT, DownloadRules.of(WeightSources(download_free_disk_margin_bytes=margin)))
    failed = finished(downloads, HUB_MODEL)
    assert failed.state == "failed" and failed.error.startswith(f"{HUB_MODEL}: not enough free disk: ")
    assert_fit_for_clients(failed.error, HUB_MODEL, str(hf_cache))
    assert not [request for request in hub.requests if "/resolve/" in request]  # not a byte fetched
    assert not (hf_cache / "models--tiny-hub--marian-ja-en" / "snapshots").exists()

    downloads.start(HUB_MODEL, COMMIT, DownloadRules.of(WeightSources(max_download_bytes=total)))
    assert finished(downloads, HUB_MODEL).state == "done"  # at the limit: fetched


def test_errors_name_the_repository_and_the_reason_only(hub, hf_cache):
    downloads = HubDownloads(endpoint=hub.url)
    downloads.start(HUB_MODEL, "f" * 40, ALL_ALLOWED)
    assert finished(downloads, HUB_MODEL).error == f"{HUB_MODEL}: the hub refused the revision {'f' * 40}"
    downloads.start("tiny-hub/missing", COMMIT, ALL_ALLOWED)
    missing = finished(downloads, "tiny-hub/missing")
    assert missing.error == "tiny-hub/missing: the hub has no such repository (or it is private)"
    closed = f"http://127.0.0.1:{free_port()}"  # a port nothing listens on
    offline = HubDownloads(endpoint=closed)
    offline.start(HUB_MODEL, COMMIT, ALL_ALLOWED)
    assert finished(offline, HUB_MODEL).error == f"{HUB_MODEL}: the connection to the hub failed"
    for download in (*downloads.states().values(), *offline.states().values()):
        assert_fit_for_clients(download.error, download.repo, str(hf_cache), hub.url, closed)


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
    assert _logged(live, f"downloading {HUB_MODEL} ({COMMIT}) from {hub.url}")


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
    assert_fit_for_clients(failed["error"], BROKEN_MODEL, str(cache), hub.url)
    response = http.post("/run_tsl/", json={"text": "猫が好きです"})
    assert response.status_code == 513
    assert f"The download of model {BROKEN_MODEL!r} failed: {failed['error']}. " in response.json()["error"]
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
