"""Reader profiles over real HTTP (the ingress's HTTP app under uvicorn): the operator makes a profile
with the token; under `/r/<key>/` its holder changes its own languages, models, manual translations and
glossary without the token, from another machine; an unknown or revoked key answers 404 and stores
nothing; keys never reach the request log or an error message."""

import logging
import re

import httpx
import pytest

from core.settings import API_TOKEN_ENV, AppArgs
from deployments.http_app import build_http_app
from tests.support.http_servers import serving
from tests.support.images import TWO_PARAGRAPHS, encode, render
from tests.support.services import FakeStages, in_process_service

TOKEN = "operator-token-7c1e"
OPERATOR = {"Authorization": f"Bearer {TOKEN}"}
ELSEWHERE = {"X-Forwarded-For": "203.0.113.9"}
"""A reader on another machine, as a relay in front of the server says (the server then needs the token
from such clients on its own paths)."""


@pytest.fixture
def server(tmp_path, monkeypatch):
    monkeypatch.setenv(API_TOKEN_ENV, TOKEN)
    args = AppArgs(data_dir=tmp_path)
    service = in_process_service(args.resolved_database_url, FakeStages(), args.limits)
    with serving(build_http_app(service, args)) as port, \
            httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
        yield client, service


def make_profile(client: httpx.Client, name: str) -> str:
    made = client.post("/profiles/", json={"name": name}, headers=OPERATOR)
    assert made.status_code == 200, made.text
    assert made.json()["name"] == name and made.json()["path"].startswith("/r/")
    return made.json()["path"]


def test_a_reader_elsewhere_sets_up_and_reads_under_their_address_without_the_token(server, caplog):
    client, service = server
    assert client.post("/profiles/", json={"name": "alice"}, headers=ELSEWHERE).status_code == 401
    alice = make_profile(client, "alice")
    models = {"box_model_id": "easyocr/craft", "ocr_model_id": "tesseract/eng", "tsl_model_id": "apertium/eng-spa"}
    with caplog.at_level(logging.INFO):
        assert client.post("/set_lang/", json={"lang_src": "en", "lang_dst": "es"},
                           headers=ELSEWHERE).status_code == 401
        assert client.post(f"{alice}/set_lang/", json={"lang_src": "en", "lang_dst": "es"},
                           headers=ELSEWHERE).status_code == 200
        assert client.post(f"{alice}/set_models/", json=models, headers=ELSEWHERE).status_code == 200
        hello = client.get(f"{alice}/", headers=ELSEWHERE).json()
        assert (hello["lang_src"], hello["lang_dst"], hello["tsl_selected"]) == ("en", "es", "apertium/eng-spa")
        assert client.get("/").json()["lang_src"] == ""  # the default profile is as it was

        contents, md5 = encode(render(TWO_PARAGRAPHS))
        assert client.post(f"{alice}/run_ocrtsl/", json={"md5": md5}, headers=ELSEWHERE).status_code == 406
        blocks = client.post(f"{alice}/run_ocrtsl/", json={"contents": contents, "md5": md5},
                             headers=ELSEWHERE).json()["result"]
        assert client.post(f"{alice}/run_ocrtsl/", json={"md5": md5}, headers=ELSEWHERE).json()["result"] == blocks
        text = blocks[0]["ocr"]
        assert client.post(f"{alice}/set_manual_translation/", json={"text": text, "translation": "Mía"},
                           headers=ELSEWHERE).status_code == 200
        assert {"text": "Mía", "model": "manual"} in client.get(
            f"{alice}/get_trans/", params={"text": text}, headers=ELSEWHERE).json()["translations"]
        assert client.post(f"{alice}/set_glossary_term/", json={"term": "Naruto", "translation": "Naruto-kun"},
                           headers=ELSEWHERE).status_code == 200
        assert client.get(f"{alice}/get_glossary/", headers=ELSEWHERE).json()["terms"] == {"Naruto": "Naruto-kun"}
        # the operator's own endpoints still need the token under a profile's address
        assert client.get(f"{alice}/status", headers=ELSEWHERE).status_code == 401
        assert client.get(f"{alice}/nothing-here", headers=ELSEWHERE).status_code == 404
    key = alice.removeprefix("/r/")
    logged = "\n".join(record.getMessage() for record in caplog.records if record.name.startswith("ray.serve"))
    assert key not in logged and "POST /r/{key}/set_lang/ -> 200" in logged
    assert re.search(r"languages set to en->es by [0-9a-f]{8}/key of profile [0-9a-f]{8}\n", logged)
    assert service.store.find_manual_translations([text], "en", "es") == {}  # not the default profile's


def test_an_unknown_or_revoked_address_answers_404_and_changes_nothing(server):
    client, service = server
    bob = make_profile(client, "bob")
    assert client.post(f"{bob}/set_lang/", json={"lang_src": "en", "lang_dst": "es"}).status_code == 200
    listed = client.get("/profiles/", headers=OPERATOR).json()["profiles"]
    assert [profile["name"] for profile in listed] == ["default", "bob"] and listed[1]["last_used"]
    assert client.post("/profiles/", json={"name": "bob"}, headers=OPERATOR).status_code == 400
    before = service.store.counts(), service.store.selection()
    for address in ("/r/" + "A" * 32, "/r/short", bob):
        if address == bob:
            assert client.post("/profiles/revoke/", json={"name": "bob"}, headers=OPERATOR).json() == {}
        for method, path, body in (("GET", "/", None), ("POST", "/set_lang/", {"lang_src": "en", "lang_dst": "fr"}),
                                   ("POST", "/run_tsl/", {"text": "hello"})):
            answer = client.request(method, address + path, json=body)
            assert answer.status_code == 404, (address, path, answer.text)
            assert "profile" in answer.json()["error"] and address.removeprefix("/r/") not in answer.text
    assert (service.store.counts(), service.store.selection()) == before
    assert client.post("/profiles/revoke/", json={"name": "bob"}, headers=OPERATOR).status_code == 404
    assert client.post("/profiles/revoke/", json={"name": "default"}, headers=OPERATOR).status_code == 404


def test_the_api_description_under_a_profiles_address_names_where_it_is_without_its_key(server):
    client, _ = server
    alice = make_profile(client, "alice")
    bare, mine = client.get("/openapi.json").json(), client.get(f"{alice}/openapi.json").json()
    assert "servers" not in bare and {**mine, "servers": None} == {**bare, "servers": None}
    assert [server["url"] for server in mine["servers"]] == [".", "/r/{key}"]
    assert alice.removeprefix("/r/") not in client.get(f"{alice}/openapi.json").text
    # a client resolves '.' against where it read the document: this profile's endpoints
    resolved = httpx.URL(f"{client.base_url}{alice}/openapi.json").join(mine["servers"][0]["url"])
    assert str(resolved) == f"{client.base_url}{alice}/"


def test_the_ui_page_is_served_under_a_profiles_address_with_the_same_strict_policy(server):
    from deployments.ui import HEADERS

    client, _ = server
    alice = make_profile(client, "alice")
    for prefix in ("", alice):
        for path, media_type in (("/ui", "text/html"), ("/ui/status", "text/html"), ("/ui/app.js", "text/javascript")):
            page = client.get(prefix + path, headers=ELSEWHERE)
            assert page.status_code == 200 and page.headers["content-type"].startswith(media_type), prefix + path
            assert {name: page.headers[name] for name in HEADERS} == HEADERS
        for path, to in (("/ui/", "../ui"), ("/ui/status/", "../status")):  # relative: the prefix stays
            moved = client.get(prefix + path)
            assert (moved.status_code, moved.headers["location"]) == (307, to)
            assert str(moved.url.join(to)) == f"{client.base_url}{prefix}{path.rstrip('/')}"
    assert client.get(f"{alice}/ui/nothing.js").status_code == 404
