"""The tests' shared set-up: Ray's token for their clusters, a marker per folder, PostgreSQL, and one real
local Ray cluster and Serve app (`live`) talked to over HTTP. What tests import lives in tests/support/."""

import os
import secrets
from pathlib import Path

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

from tests.support.live import (  # noqa: E402  (after the environment above, which Ray reads at import)
    API_TOKEN,
    BODY_READ_TIMEOUT_S,
    IN_FLIGHT_LIMIT,
    MAX_BODY_BYTES,
    PER_CLIENT_LIMIT,
    LiveServer,
    start_app,
    unlimited_model_loads,
    write_absent_entry,
)
from tests.support.ports import free_port  # noqa: E402
from tests.support.waiting import answers, wait_for  # noqa: E402

SKIP_POSTGRES_ENV = "OCR_SERVE_SKIP_POSTGRES"
KINDS = ("unit", "engines", "store", "serve", "browser", "faults", "cluster", "bench")
"""The folders of tests/, one kind of test each; each folder's tests carry the marker of its name
(registered in pyproject.toml), so `-m "not cluster"` leaves the multi-node tests out."""
LIVE_APP_FIXTURES = {"live"}


def pytest_collection_modifyitems(items):
    """Each test gets its folder's marker, and `serve` too wherever it uses the session's Serve app; the
    fault tests run last: they replace replicas, which resets the counters other tests read."""
    for item in items:
        folder = Path(item.fspath).parent.name
        assert folder in KINDS, f"{item.nodeid}: tests live in a folder of one kind ({', '.join(KINDS)})"
        item.add_marker(folder)
        if folder != "serve" and LIVE_APP_FIXTURES & set(item.fixturenames):
            item.add_marker("serve")
    items.sort(key=lambda item: item.get_closest_marker("faults") is not None)


@pytest.fixture(scope="session")
def postgres():
    from tests.support.postgres import PostgresServer

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


@pytest.fixture(scope="session")
def registry():
    """The built-in model entries (a module may give its own `registry`)."""
    from models_registry import Registry

    return Registry.load()


@pytest.fixture(scope="session")
def detector(registry):
    """The default pipeline's box model, PP-OCRv4's detector, loaded on the CPU."""
    from models_registry.backends.base import Runtime

    return registry.load_backend("rapidocr/ppocr-v4-det", "box", Runtime("cpu", 1))


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path) -> str:
    """A new empty database of each kind the store supports."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/store.sqlite3"
    return request.getfixturevalue("postgres").new_database()


@pytest.fixture(scope="session")
def live(tmp_path_factory) -> LiveServer:
    import ray
    from ray import serve

    from tests.support.tiny_hf import write_tiny_models

    port = free_port()
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
    metrics_port = free_port()
    context = ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING", _metrics_export_port=metrics_port)
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    start_app(app_args)
    server = LiveServer(f"http://127.0.0.1:{port}", data_dir, f"sqlite:///{data_dir}/ocr_translate_serve.sqlite3",
                        app_args, f"http://127.0.0.1:{metrics_port}/metrics", context.address_info["session_dir"])
    wait_for(lambda: answers(server.http), 120, "the Serve app answering")
    yield server
    serve.shutdown()
    ray.shutdown()
