"""Model multiplexing in BoxDetector and OCRReader: a replica keeps at most `max_models_per_replica`
models and drops the least recently used one; with several replicas, a request goes to the replica
that holds its model, so a model is loaded once however many requests name it.

Two applications of their own (tests/support/declared_apps.py), with a box model entry added so that a
box replica can be asked for a third model: one replica each with room for two models (LRU), and
two replicas each with room for one (routing: a request sent to the wrong replica would load its
model there and evict the other one, which the replicas' `loads` counters show).
"""

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import ray

from core.options import resolve
from models_registry import Registry
from tests.support.declared_apps import DEADLINE_S, DeclaredApp, declared_app
from tests.support.images import TWO_PARAGRAPHS, render

BOX_COPY = "test/ppocr-v4-det-b"
MODELS = {
    "BoxDetector": ["rapidocr/ppocr-v4-det", BOX_COPY, "easyocr/craft"],
    "OCRReader": ["tesseract/eng", "tesseract/spa", "tesseract/fra"],
}
ARGS = {"BoxDetector": "box_detector", "OCRReader": "ocr_reader"}
IMAGE = np.asarray(render(TWO_PARAGRAPHS))


def write_box_copy(folder: Path) -> Path:
    (folder / "box_copy.yaml").write_text(f"""
- id: {BOX_COPY}
  kind: box
  backend: rapidocr
  description: The PP-OCRv4 detector again under another id, a third box model for the tests.
  languages: ["*"]
  weights:
    files: [ch_PP-OCRv4_det_infer.onnx]
""")
    return folder


def app_args(live, entries: Path, models_per_replica: int) -> dict[str, Any]:
    return {"registry_dirs": [*live.app_args["registry_dirs"], str(entries)],
            "preload_selected_models": False,  # nothing loads but what a test asks for
            **{ARGS[name]: {"max_models_per_replica": models_per_replica} for name in MODELS}}


@pytest.fixture(scope="module")
def entries(tmp_path_factory) -> Path:
    return write_box_copy(tmp_path_factory.mktemp("routing_entries"))


@pytest.fixture(scope="module")
def registry(entries) -> Registry:
    return Registry.load([entries])


def use(app: DeclaredApp, registry: Registry, deployment: str, model_id: str) -> None:
    """One real request for the model: a detection of the test image, or a read of a crop of it."""
    handle = app.handle(deployment).options(multiplexed_model_id=model_id)
    options = resolve(registry.get(model_id).option_specs, None)
    if deployment == "BoxDetector":
        assert handle.detect.remote([ray.put(IMAGE)], "en", options).result()
    else:
        handle.read.remote([IMAGE[20:110, 20:500]], registry.get(model_id).languages[0], options).result()


def replica_stats(app: DeclaredApp, deployment: str, replicas: int) -> dict[int, dict[str, Any]]:
    """Every replica's counters, by process id: calls without a model id reach either replica."""
    found: dict[int, dict[str, Any]] = {}
    deadline = time.monotonic() + DEADLINE_S
    while len(found) < replicas:
        stats = app.stats(deployment)
        found[stats["pid"]] = stats
        assert time.monotonic() < deadline, f"reached {len(found)} of {replicas} {deployment} replicas"
    return found


@pytest.fixture(scope="module")
def lru_app(live, entries, tmp_path_factory) -> Iterator[DeclaredApp]:
    with declared_app(live, tmp_path_factory.mktemp("lru_data"), "lru", args=app_args(live, entries, 2)) as app:
        yield app


@pytest.mark.parametrize("deployment", list(MODELS))
def test_a_replica_drops_its_least_recently_used_model(lru_app, registry, deployment):
    x, y, z = MODELS[deployment]
    for model_id in (x, y, x):  # holds x and y; x was used last
        use(lru_app, registry, deployment, model_id)
    loads = lru_app.stats(deployment)["loads"]
    use(lru_app, registry, deployment, z)  # no room for a third: y goes, x stays
    use(lru_app, registry, deployment, x)
    assert lru_app.stats(deployment)["loads"].get(x) == loads[x], "x was used more recently than y but dropped"
    use(lru_app, registry, deployment, y)
    after = lru_app.stats(deployment)
    assert after["loads"][y] == loads[y] + 1 and after["loads"][z] == 1
    holds(lru_app, deployment, {x, y})  # z was the least recently used this time


def holds(app: DeclaredApp, deployment: str, models: set[str]) -> None:
    """The replica's loaded models (a dropped model leaves the list when it is garbage collected)."""
    app.wait_for(lambda: set(app.stats(deployment)["loaded"]) == models, f"{deployment} holding {models}")


@pytest.fixture(scope="module")
def routing_app(live, entries, tmp_path_factory) -> Iterator[DeclaredApp]:
    with declared_app(live, tmp_path_factory.mktemp("routing_data"), "routing",
                      replicas={name: 2 for name in MODELS}, args=app_args(live, entries, 1)) as app:
        yield app


@pytest.mark.parametrize("deployment", list(MODELS))
def test_requests_go_to_the_replica_that_holds_their_model(routing_app, registry, deployment):
    a, b = MODELS[deployment][:2]
    # Settle: each replica holds one of the two models, and a round of both loads nothing.
    deadline = time.monotonic() + DEADLINE_S
    previous = None
    while True:
        use(routing_app, registry, deployment, a)
        use(routing_app, registry, deployment, b)
        stats = replica_stats(routing_app, deployment, 2)
        loads = {pid: s["loads"] for pid, s in stats.items()}
        if sorted(s["loaded"] for s in stats.values()) == [[a], [b]] and loads == previous:
            break
        previous = loads
        assert time.monotonic() < deadline, f"{deployment} replicas never settled on one model each: {stats}"

    # Not in turns: a router that took the replicas in turn would pass a strict a, b, a, b.
    pattern = [a, a, b, b, a, b, b, a]
    for model_id in pattern:
        use(routing_app, registry, deployment, model_id)
    after = replica_stats(routing_app, deployment, 2)
    assert {pid: s["loads"] for pid, s in after.items()} == loads, "a model was loaded again: a request went to the " \
                                                                     "replica without it"
    for pid, before in stats.items():
        [held] = before["loaded"]
        other = b if held == a else a
        calls = {model_id: after[pid]["calls"].get(model_id, 0) - before["calls"].get(model_id, 0)
                 for model_id in (held, other)}
        assert calls == {held: pattern.count(held), other: 0}, (pid, held, calls)
