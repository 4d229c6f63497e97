"""The self-service page (`profiles.self_service`, `/profiles/new`) over real HTTP: on by default where the
server listens on this machine only, off (404) elsewhere unless the operator turns it on; the page keeps
/ui's strict policy; a web page's cross-site post makes no profile, nor does a form; one address makes at
most a few an hour."""

import contextlib
from collections.abc import Iterator

import httpx
import pytest

from core.settings import API_TOKEN_ENV, AppArgs, ProfileSettings
from deployments.http_app import build_http_app
from deployments.self_service import PROFILES_PER_ADDRESS_PER_HOUR
from deployments.ui import HEADERS
from tests.support.http_servers import serving
from tests.support.services import FakeStages, in_process_service

TOKEN = "operator-token-5e0a"


@pytest.fixture
def served(tmp_path, monkeypatch):
    """`served(http_host, self_service)`: a client of the app as built for a server listening on `http_host`."""
    monkeypatch.setenv(API_TOKEN_ENV, TOKEN)

    def serve(http_host: str, self_service: bool | None = None):
        args = AppArgs(data_dir=tmp_path, profiles=ProfileSettings(self_service=self_service))
        service = in_process_service(args.resolved_database_url, FakeStages(), args.limits)
        return service, build_http_app(service, args, http_host)

    return serve


@contextlib.contextmanager
def _client(app) -> Iterator[httpx.Client]:
    """A client of `app` served on this machine, for the length of a `with` block."""
    with serving(app) as port, httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
        yield client


def test_on_for_a_server_on_this_machine_the_page_makes_a_profile_whose_address_works(served):
    service, app = served("127.0.0.1")
    with _client(app) as client:
        page = client.get("/profiles/new")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert {name: page.headers[name] for name in HEADERS} == HEADERS and "<script>" not in page.text
        made = client.post("/profiles/new", json={"name": "carol"})
        assert made.status_code == 200 and made.json()["name"] == "carol"
        path = made.json()["path"]
        assert client.post(f"{path}/set_lang/", json={"lang_src": "en", "lang_dst": "es"}).status_code == 200
        assert client.post("/profiles/new", json={"name": "carol"}).status_code == 400  # names are unique
    assert [profile.name for profile in service.store.profiles()] == ["default", "carol"]


@pytest.mark.parametrize("http_host,self_service,on", [
    ("0.0.0.0", None, False), ("192.0.2.7", None, False), ("0.0.0.0", True, True), ("127.0.0.1", False, False),
    ("localhost", None, True), ("[::1]", None, True)])
def test_off_answers_404_and_the_operator_decides_for_a_network_server(served, http_host, self_service, on):
    service, app = served(http_host, self_service)
    with _client(app) as client:
        statuses = client.get("/profiles/new").status_code, client.post("/profiles/new", json={"name": "x"}).status_code
    assert statuses == ((200, 200) if on else (404, 404))
    assert len(service.store.profiles()) == (2 if on else 1)


@pytest.mark.parametrize("headers,body", [
    ({"Origin": "https://pages.example"}, {"json": {"name": "mallory"}}),  # another site's fetch
    ({"Origin": "http://127.0.0.1:5173"}, {"json": {"name": "mallory"}}),  # a dev server's page on this machine
    ({"Sec-Fetch-Site": "cross-site"}, {"json": {"name": "mallory"}}),  # a browser that sends no Origin
    ({}, {"data": {"name": "mallory"}}),  # a form's body (any site's form may post one)
    ({}, {"content": b'{"name": "mallory"}', "headers": {"Content-Type": "text/plain"}}),  # a text/plain form
])
def test_a_web_pages_cross_site_post_makes_no_profile(served, headers, body):
    service, app = served("127.0.0.1")
    with _client(app) as client:
        refused = client.post("/profiles/new", **{**body, "headers": {**headers, **body.get("headers", {})}})
    assert refused.status_code in (400, 403) and "error" in refused.json()
    assert [profile.name for profile in service.store.profiles()] == ["default"]


def test_one_address_makes_at_most_its_hours_profiles(served):
    service, app = served("127.0.0.1")
    with _client(app) as client:
        made = [client.post("/profiles/new", json={"name": f"reader {n}"}).status_code
                for n in range(PROFILES_PER_ADDRESS_PER_HOUR + 1)]
        refused = client.post("/profiles/new", json={"name": "one more"})
    assert made == [200] * PROFILES_PER_ADDRESS_PER_HOUR + [429]
    assert refused.status_code == 429 and f"made {PROFILES_PER_ADDRESS_PER_HOUR} profiles" in refused.json()["error"]
    assert len(service.store.profiles()) == 1 + PROFILES_PER_ADDRESS_PER_HOUR
