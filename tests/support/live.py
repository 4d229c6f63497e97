"""The session's Serve app as the tests see it (the `live` fixture in tests/conftest.py starts it): its
settings, what it answers on, a second application beside it, and slow clients against it."""

import concurrent.futures
import contextlib
import threading
import time
from functools import cache
from pathlib import Path

import httpx

from core.options import resolve
from core.settings import WeightSources
from core.slots import ModelSlots
from models_registry import Registry

APP_NAME = "ocr_translate"
API_TOKEN = "test-token-5f2c"
"""The test app requires it from everyone on state-changing endpoints; `live.http` sends it."""
AUTH = {"Authorization": f"Bearer {API_TOKEN}"}
IN_FLIGHT_LIMIT = 24
"""The test app's limit of requests in flight: above the other tests' concurrency (20)."""
MAX_BODY_BYTES = 4_000_000
PER_CLIENT_LIMIT = 22
"""One client's share of the in-flight limit: the other tests send from one address, up to 20 at once."""
BODY_READ_TIMEOUT_S = 3


ABSENT_TESSERACT = "tesseract/tha"
"""A model whose software this machine lacks (Tesseract Thai, which `make test` does not install)."""


def write_absent_entry(folder: Path) -> Path:
    (folder / "absent.yaml").write_text(f"""
- id: {ABSENT_TESSERACT}
  kind: ocr
  backend: tesseract
  description: Tesseract Thai, never installed for the tests.
  languages: [th]
  weights: {{name: tha, install_hint: apt-get install tesseract-ocr-tha}}
""")
    return folder


class LiveServer:
    def __init__(self, url: str, data_dir, database_url: str, app_args: dict, metrics_url: str, session_dir: str):
        self.url = url
        self.session_dir = Path(session_dir)
        """This cluster's Ray session folder (logs): not /tmp/ray/session_latest, which the newest cluster takes."""
        self.metrics_url = metrics_url
        self.data_dir = data_dir
        self.database_url = database_url
        self.app_args = app_args
        self.http = httpx.Client(base_url=url, timeout=300, headers=AUTH)

    def stats(self, deployment: str) -> dict:
        from ray import serve

        return serve.get_deployment_handle(deployment, app_name=APP_NAME).stats.remote().result()

    def store(self):
        from service.store import Store

        return Store(self.database_url)

    def row_counts(self) -> dict[str, int]:
        """Rows per table of the store: what a rejected request must leave unchanged."""
        from sqlalchemy import func, select

        from service.store import Base

        store = self.store()
        with store.engine.connect() as connection:
            counts = {table.name: connection.scalar(select(func.count()).select_from(table))
                      for table in Base.metadata.sorted_tables}
        store.close()
        return counts


def slow_upload(url: str, stall_s: float) -> int:
    """A `run_tsl` call from this machine whose body stalls `stall_s` seconds halfway: it holds one of
    the client's in-flight slots until the body-read deadline answers it (408). Its status."""

    def body():
        yield b'{"text": '
        time.sleep(stall_s)
        yield b'"late"}'

    with httpx.Client(base_url=url, timeout=60) as client:
        response = client.post("/run_tsl/", content=body(), headers={"Content-Type": "application/json", **AUTH})
        return response.status_code


def held_upload(url: str, release: threading.Event) -> int:
    """A `run_tsl` call (under `url`, a server's or a reader profile's address) whose body waits for
    `release` halfway (30 s at most): it is in flight until then. Its status."""

    def body():
        yield b'{"text": '
        release.wait(30)
        yield b'"late"}'

    with httpx.Client(base_url=url, timeout=60) as client:
        return client.post("/run_tsl/", content=body(), headers={"Content-Type": "application/json"}).status_code


def unlimited_model_loads() -> dict:
    """The model deployments' args of configs/local.yaml, without the limit on model loads a minute:
    the tests switch models far more often than any reader (tests/unit/test_security.py tests the limit)."""
    import graph

    args = graph.read_config(graph.LOCAL_CONFIG)[0]
    return {name: {**args.get(name, {}), "max_model_loads_per_minute": 100_000}
            for name in ("box_detector", "ocr_reader", "translator")}


def start_app(app_args: dict):
    from ray import serve

    import graph

    # One replica per model deployment: tests count a deployment's model calls on its replica.
    options = {name: {"autoscaling_config": None, "num_replicas": 1}
               for name in ("BoxDetector", "OCRReader", "Translator")}
    serve.run(graph.app_from_config(graph.LOCAL_CONFIG, options, **app_args), name=APP_NAME, route_prefix="/")


@contextlib.contextmanager
def second_app(live: LiveServer, name: str, prefix: str, data_dir, options: dict | None = None, **args):
    """configs/local.yaml as another application of the test cluster under `prefix`, one small
    replica per deployment, its own store in `data_dir`; `options` and `args` change it. Deleted after."""
    from ray import serve

    import graph

    small = {deployment: {"ray_actor_options": {"num_cpus": 0.05}, "num_replicas": 1, "autoscaling_config": None}
             for deployment in ("Ingress", "BoxDetector", "OCRReader", "Translator")}
    for deployment, changes in (options or {}).items():
        small[deployment].update(changes)
    serve.run(graph.app_from_config(graph.LOCAL_CONFIG, small, **{**live.app_args, "data_dir": str(data_dir), **args}),
              name=name, route_prefix=prefix)
    try:
        yield f"{live.url}{prefix}"
    finally:
        serve.delete(name)


MODELS = {"box_model_id": "easyocr/craft", "ocr_model_id": "tesseract/eng", "tsl_model_id": "apertium/eng-spa"}


def select_models(live, models=MODELS):
    assert live.http.post("/set_lang/", json={"lang_src": "en", "lang_dst": "es"}).status_code == 200
    response = live.http.post("/set_models/", json=models)
    assert response.status_code == 200, response.text


def reset_selection(live):
    live.store().update_selection(lang_src="", lang_dst="", models=ModelSlots("", "", ""))


def ocrtsl(live, **body):
    return live.http.post("/run_ocrtsl/", json=body)


def choose(live, lang_src="ja", lang_dst="en", **models):
    assert live.http.post("/set_lang/", json={"lang_src": lang_src, "lang_dst": lang_dst}).status_code == 200
    if models:
        response = live.http.post("/set_models/", json=models)
        assert response.status_code == 200, response.text


@cache
def _registry(entries: str, models: str) -> Registry:
    return Registry.load([Path(entries)], WeightSources(models_dirs=[Path(models)]))


@cache
def _backend(entries: str, models: str, model_id: str, kind: str = "tsl"):
    return _registry(entries, models).load_backend(model_id, kind)


def loaded_here(live, model_id: str, kind: str = "tsl"):
    args = live.app_args
    return _backend(args["registry_dirs"][0], args["weights"]["models_dirs"][0], model_id, kind)


def direct(live, model_id: str, text: str, src="ja", dst="en", **options) -> str:
    """The model's translation computed here, without the server."""
    backend = loaded_here(live, model_id)
    values = resolve(backend.entry.option_specs, options)
    return backend.translate([text], backend.entry.code_for(src), backend.entry.code_for(dst), values)[0]


def held_by_this_machine(live: LiveServer) -> int:
    """The requests from 127.0.0.1 the app's ingress works on now (its in-flight limit's own count). Asked
    from a thread of its own: Serve's handles refuse blocking calls where an event loop runs (Playwright's)."""
    with concurrent.futures.ThreadPoolExecutor(1) as asking:
        stats = asking.submit(live.stats, "Ingress").result()
    return stats["in_flight_by_client"].get("127.0.0.1", 0)
