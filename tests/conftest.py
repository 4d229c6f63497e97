"""One real local Ray cluster and Serve app for the integration tests, talked to over HTTP."""

import contextlib
import os
import secrets
import socket
import time
from pathlib import Path

import httpx
import pytest

from core.settings import API_TOKEN_ENV
from deployments.proxy_errors import PROXY_CALLBACK, PROXY_CALLBACK_ENV

# Ray's token authentication on in the tests' clusters, with a token of their own: Ray reads
# RAY_AUTH_TOKEN before RAY_AUTH_TOKEN_PATH and ~/.ray/auth_token, so the user's token is never read.
RAY_TOKEN = secrets.token_hex(32)
os.environ.update({"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": RAY_TOKEN})
os.environ.setdefault(PROXY_CALLBACK_ENV, PROXY_CALLBACK)  # read by Serve's proxy when it starts, as make run sets it
# Tests never reach for the Hugging Face hub (read by huggingface_hub at import, so set first).
os.environ["HF_HUB_OFFLINE"] = "1"
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


SKIP_POSTGRES_ENV = "OCR_SERVE_SKIP_POSTGRES"
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


def pytest_collection_modifyitems(items):
    """Fault tests last: they replace replicas, which resets the counters other tests read."""
    items.sort(key=lambda item: item.get_closest_marker("faults") is not None)


@pytest.fixture(scope="session")
def postgres():
    from .postgres import PostgresServer

    try:
        server = PostgresServer()
    except (FileNotFoundError, KeyError) as exc:
        reason = f"no PostgreSQL server for the tests: {exc}"
        if os.environ.get(SKIP_POSTGRES_ENV) == "1":  # said explicitly, never by accident
            pytest.skip(reason)
        pytest.fail(f"{reason}. Install it (sudo apt-get install postgresql; `make test` does as root), or set "
                    f"{SKIP_POSTGRES_ENV}=1 to skip the PostgreSQL tests.", pytrace=False)
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path) -> str:
    """A new empty database of each kind the store supports."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/store.sqlite3"
    return request.getfixturevalue("postgres").new_database()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


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


def unlimited_model_loads() -> dict:
    """The model deployments' args of configs/local.yaml, without the limit on model loads a minute:
    the tests switch models far more often than any reader (tests/test_security.py tests the limit)."""
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


@pytest.fixture(scope="session")
def live(tmp_path_factory) -> LiveServer:
    import ray
    from ray import serve

    from .tiny_hf import write_tiny_models

    port = _free_port()
    data_dir = tmp_path_factory.mktemp("data")
    models, entries = tmp_path_factory.mktemp("models"), tmp_path_factory.mktemp("entries")
    write_tiny_models(models, entries)
    write_absent_entry(entries)
    app_args = {"data_dir": str(data_dir), "registry_dirs": [str(entries)], "weights": {"models_dirs": [str(models)]},
                "limits": {"max_requests_in_flight": IN_FLIGHT_LIMIT, "max_body_bytes": MAX_BODY_BYTES,
                           "max_requests_in_flight_per_client": PER_CLIENT_LIMIT,
                           "body_read_timeout_s": BODY_READ_TIMEOUT_S},
                "security": {"token_required_from": "everyone"}, **unlimited_model_loads()}
    os.environ[API_TOKEN_ENV] = API_TOKEN  # before Ray starts: its workers inherit the environment
    metrics_port = _free_port()
    context = ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING", _metrics_export_port=metrics_port)
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    start_app(app_args)
    server = LiveServer(f"http://127.0.0.1:{port}", data_dir, f"sqlite:///{data_dir}/ocr_translate_serve.sqlite3",
                        app_args, f"http://127.0.0.1:{metrics_port}/metrics", context.address_info["session_dir"])
    deadline = time.monotonic() + 120
    while True:
        try:
            if server.http.get("/").status_code == 200:
                break
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError("the Serve app did not answer within 120 s")
        time.sleep(0.2)
    yield server
    serve.shutdown()
    ray.shutdown()
