"""Where Hugging Face weights are looked for, and what a missing model says (no model loads here)."""

import asyncio
import json

import pytest

from core.errors import ModelLoadError
from core.settings import WeightSources
from core.slots import chosen
from models_registry import Registry
from models_registry.backends.huggingface import find_weights
from models_registry.hub_downloads import Download, DownloadRules
from models_registry.registry import RegistryError
from tests.support.services import in_process_service

ENTRY = """
- id: org/model
  kind: tsl
  backend: huggingface
  languages: [ja]
  languages_dst: [en]
  weights: {repo: org/model}
"""
MAIN, PINNED = "0" * 40, "1" * 40
"""The commit the cache's refs/main names, and the one the pinned entry names."""


def pinned(entry: str = ENTRY, revision: str = PINNED) -> str:
    return entry.replace("weights: {repo: org/model}", f"weights: {{repo: org/model, revision: '{revision}'}}")


def _registry(tmp_path, weights: WeightSources, entry: str = ENTRY) -> Registry:
    entries = tmp_path / "entries"
    entries.mkdir(exist_ok=True)
    (entries / "extra.yaml").write_text(entry)
    return Registry.load([entries], weights)


def _model_folder(root, repo="org/model"):
    folder = root / repo
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"model_type": "marian"}))
    return folder


def _cached_snapshot(cache, repo="org/model", commit=MAIN):
    """The Hugging Face cache layout: models--org--name/refs/main -> snapshots/<commit>/ (a commit other
    than main's: its snapshot only)."""
    repo_dir = cache / f"models--{repo.replace('/', '--')}"
    if commit == MAIN:
        (repo_dir / "refs").mkdir(parents=True)
        (repo_dir / "refs" / "main").write_text(MAIN)
    return _model_folder(repo_dir / "snapshots", commit)


@pytest.fixture
def hf_cache(tmp_path, monkeypatch):
    from huggingface_hub import constants

    cache = tmp_path / "hf-cache"
    cache.mkdir()
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    return cache


def test_models_folders_come_first_in_order(tmp_path, hf_cache):
    first, second = tmp_path / "first", tmp_path / "second"
    _model_folder(second)
    _cached_snapshot(hf_cache)
    registry = _registry(tmp_path, WeightSources(models_dirs=[first, second]))
    assert find_weights(registry.get("org/model"), registry.weights) == str(second / "org/model")
    _model_folder(first)
    assert find_weights(registry.get("org/model"), registry.weights) == str(first / "org/model")


def test_the_hugging_face_cache_is_used_when_no_folder_has_the_model(tmp_path, hf_cache):
    snapshot = _cached_snapshot(hf_cache)
    registry = _registry(tmp_path, WeightSources(models_dirs=[tmp_path / "models"]))
    assert find_weights(registry.get("org/model"), registry.weights) == str(snapshot)
    assert registry.availability("org/model").usable


def test_missing_weights_hide_the_model_and_name_every_place_searched(tmp_path, hf_cache, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    folders = [tmp_path / "a", tmp_path / "b"]
    registry = _registry(tmp_path, WeightSources(models_dirs=folders, hub_downloads=True))  # but offline
    availability = registry.availability("org/model")
    assert not availability.usable
    for place in [*(str(folder / "org/model") for folder in folders), str(hf_cache), "hf download org/model"]:
        assert place in availability.reason
    assert "org/model" not in [entry.id for entry in registry.usable("tsl")]
    with pytest.raises(ModelLoadError, match="searched"):
        registry.load_backend("org/model", "tsl")


def test_a_revision_is_a_commit_id(tmp_path):
    for revision in ("main", "v1.0", "0123abc", "A" * 40, "0" * 41):
        with pytest.raises(RegistryError, match="revision"):
            _registry(tmp_path, WeightSources(), pinned(revision=revision))
    with pytest.raises(RegistryError, match="in quotes"):  # YAML reads an unquoted 111...1 as a number
        _registry(tmp_path, WeightSources(), pinned().replace(f"'{PINNED}'", PINNED))
    assert _registry(tmp_path, WeightSources(), pinned()).get("org/model").weights.revision == PINNED


def test_an_unpinned_entry_is_downloaded_only_where_the_config_allows_it(tmp_path, hf_cache, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    availability = _registry(tmp_path, WeightSources(hub_downloads=True)).availability("org/model")
    assert not availability.usable and availability.download is None
    assert "pin weights.revision" in availability.reason and "hf download org/model" in availability.reason
    registry = _registry(tmp_path, WeightSources(hub_downloads=True, allow_unpinned_downloads=True))
    assert registry.availability("org/model").download == "org/model"
    _cached_snapshot(hf_cache)  # main's commit arrives: an unpinned entry loads it
    assert registry.recheck("org/model").download is None
    assert find_weights(registry.get("org/model"), registry.weights) == str(hf_cache / "models--org--model" /
                                                                            "snapshots" / MAIN)


def test_a_pinned_entry_loads_its_commit_and_no_other(tmp_path, hf_cache, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    _cached_snapshot(hf_cache)  # main's commit is in the cache
    registry = _registry(tmp_path, WeightSources(hub_downloads=True), pinned())
    assert registry.availability("org/model").download == "org/model"  # not the entry's commit
    with pytest.raises(ModelLoadError, match=f"not found .*at revision {PINNED}"):
        find_weights(registry.get("org/model"), registry.weights)
    snapshot = _cached_snapshot(hf_cache, commit=PINNED)
    assert registry.recheck("org/model").download is None
    assert find_weights(registry.get("org/model"), registry.weights) == str(snapshot)


def test_hub_downloads_when_allowed_and_online_offer_the_model_but_no_replica_loads_it_before(
        tmp_path, hf_cache, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    registry = _registry(tmp_path, WeightSources(hub_downloads=True), pinned(revision=MAIN))
    availability = registry.availability("org/model")
    assert availability.usable and availability.download == "org/model"  # offered; fetched when selected
    with pytest.raises(ModelLoadError, match="not found"):
        find_weights(registry.get("org/model"), registry.weights)  # a model replica never downloads
    with pytest.raises(ModelLoadError, match="selecting it downloads them"):
        registry.load_backend("org/model", "tsl")
    _cached_snapshot(hf_cache)  # the download arrives
    assert registry.availability("org/model").download == "org/model"  # as seen at start ...
    assert registry.recheck("org/model").download is None  # ... until the registry looks again
    assert Registry(list(registry.entries.values()), WeightSources()).availability("org/model").download is None


class FakeDownloads:
    """The application's downloads as the catalogue sees them, scripted: what each repository's
    download is now, and which downloads were started (with the revision and rules each was given)."""

    def __init__(self):
        self.now: dict[str, Download] = {}
        self.started: list[str] = []
        self.given: list[tuple[str | None, DownloadRules | None]] = []

    def start(self, repo: str, revision: str | None = None, rules: DownloadRules | None = None) -> Download:
        self.started.append(repo)
        self.given.append((revision, rules))
        return self.now[repo]

    def state(self, repo: str) -> Download | None:
        return self.now[repo] if repo in self.started else None

    def states(self) -> dict[str, Download]:
        return {repo: self.now[repo] for repo in self.started}


def test_a_selected_model_on_the_hub_answers_513_until_its_download_arrives(tmp_path, hf_cache, monkeypatch):
    """The on-demand download path in process: selecting starts the download and answers what is to come
    (the 202), requests meanwhile answer 513 with the progress or the failure, a server that restarted
    starts the download again, and the model serves once its snapshot is in the cache."""
    from huggingface_hub import constants

    from core.errors import ModelsNotSet
    from service.jobs import Overrides
    from tests.support.services import FakeStages

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    fake, started_before = FakeDownloads(), FakeDownloads()
    weights = WeightSources(hub_downloads=True, max_download_bytes=123_456_789, download_free_disk_margin_bytes=7)
    service = in_process_service(tmp_path, FakeStages(), registry=_registry(tmp_path, weights, pinned(revision=MAIN)),
                                 downloads=fake)
    other = tmp_path / "other"  # a second server, started before the download arrived, with a second hub model
    other.mkdir()
    (other / "two.yaml").write_text(pinned(revision=MAIN) + pinned(revision=MAIN).replace("org/model", "org/other"))
    two_models = in_process_service(other, FakeStages(), downloads=started_before,
                                    registry=Registry.load([other], WeightSources(hub_downloads=True)))
    assert two_models.catalogue.registry.availability("org/model").download == "org/model"  # seen at its start
    service.store.update_selection(lang_src="ja", lang_dst="en")

    def tsl() -> str:
        return asyncio.run(service.pipeline.run_tsl("猫", Overrides(), None))

    fake.now["org/model"] = Download("org/model", "downloading", 50, 100)
    answer = asyncio.run(service.catalogue.set_models(chosen(tsl="org/model")))
    assert answer.startswith("Selected. Model 'org/model' is downloading (50%") and "GET /status" in answer
    assert fake.started == ["org/model"] and service.stages.calls["warm org/model"] == 0
    assert fake.given == [(MAIN, DownloadRules(123_456_789, 7, False))]  # the entry's commit, the config's rules
    assert service.store.selection().models.tsl == "org/model"
    with pytest.raises(ModelsNotSet, match=r"^Model 'org/model' is downloading \(50%"):
        tsl()
    assert fake.started == ["org/model"]  # known: not started again
    fake.started.clear()  # the server restarted: the download is started again
    with pytest.raises(ModelsNotSet, match="is downloading"):
        tsl()
    assert fake.started == ["org/model"]
    fake.now["org/model"] = Download("org/model", "failed", error="org/model: the hub answered with status 500")
    with pytest.raises(ModelsNotSet, match="^The download of model 'org/model' failed: org/model: the hub answered"):
        tsl()
    fake.now["org/model"] = Download("org/model", "done")  # done, but not in this process's cache
    with pytest.raises(ModelsNotSet, match="cache this server does not see"):
        tsl()
    assert "cache this server does not see" in asyncio.run(service.catalogue.set_models(chosen(tsl="org/model")))
    assert service.catalogue._start_downloads(["original", "org/model"]).keys() == {"org/model"}
    _cached_snapshot(hf_cache)  # the download arrives
    assert tsl() == "猫"  # FakeStages upper-cases
    assert asyncio.run(service.catalogue.set_models(chosen(tsl="org/model"))) is None
    assert service.stages.calls["warm org/model"] == 1  # selected again, now loaded before answering
    # The server started before it arrived: a finished download whose snapshot is here counts as arrived,
    # and the next hub model is still looked at.
    started_before.now = {"org/model": Download("org/model", "done"),
                          "org/other": Download("org/other", "downloading", 1, 100)}
    assert two_models.catalogue._start_downloads(["org/model", "org/other"]).keys() == {"org/other"}
