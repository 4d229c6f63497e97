"""A reader profile's export and import over real HTTP (the ingress's HTTP app under uvicorn): the
operator's endpoints need the token from another machine, under a profile's address too; an import
answers like `POST /profiles/` (a new key, shown once) and refuses a taken name, a foreign document and
one over the operator's caps, storing nothing."""

import httpx
import pytest

from core.settings import API_TOKEN_ENV, AppArgs, ProfileSettings
from core.slots import chosen
from deployments.http_app import build_http_app
from tests.support.http_servers import serving
from tests.support.services import FakeStages, in_process_service

TOKEN = "operator-token-51a0"
OPERATOR = {"Authorization": f"Bearer {TOKEN}"}
ELSEWHERE = {"X-Forwarded-For": "203.0.113.9"}
"""A client on another machine, as a relay in front of the server says: it needs the token."""
OPERATOR_ELSEWHERE = {**OPERATOR, **ELSEWHERE}


@pytest.fixture
def served(tmp_path, monkeypatch):
    """The app, its operator allowing a profile 2 glossary terms."""
    monkeypatch.setenv(API_TOKEN_ENV, TOKEN)
    args = AppArgs(data_dir=tmp_path, profiles=ProfileSettings(max_glossary_terms=2))
    service = in_process_service(args.resolved_database_url, FakeStages(), args.limits, profiles=args.profiles)
    with serving(build_http_app(service, args)) as port, \
            httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
        yield client, service


def _alice(client: httpx.Client, store) -> str:
    """alice's address, her profile holding models she chose for Japanese, a selection, a manual translation
    and two glossary terms."""
    address = client.post("/profiles/", json={"name": "alice"}, headers=OPERATOR).json()["path"]
    alice = store.profile_named("alice").id
    assert client.post(f"{address}/set_lang/", json={"lang_src": "ja", "lang_dst": "en"}).status_code == 200
    assert client.post(f"{address}/set_models/", json={"box_model_id": "rapidocr/ppocr-v4-det",
                                                       "ocr_model_id": "tesseract/jpn_vert"}).status_code == 200
    store.update_selection("en", "es", chosen(box="easyocr/craft", ocr="tesseract/eng", tsl="apertium/eng-spa"),
                           profile=alice)
    store.set_manual_translation("Hello there", "en", "es", "¡Hola, tú!", alice)
    store.set_glossary_term("en", "es", "Naruto", "Naruto-kun", alice)
    store.set_glossary_term("en", "es", "Konoha", "la Hoja", alice)
    return address


def test_the_operator_exports_a_profile_and_imports_it_under_a_new_name_and_key(served):
    client, service = served
    alice = _alice(client, service.store)
    asked = {"name": "alice"}
    assert client.get("/profiles/export/", params=asked, headers=ELSEWHERE).status_code == 401
    assert client.get(f"{alice}/profiles/export/", params=asked, headers=ELSEWHERE).status_code == 401
    exported = client.get("/profiles/export/", params=asked, headers=OPERATOR_ELSEWHERE)
    assert exported.status_code == 200, exported.text
    document = exported.json()
    digest = service.store.profile_named("alice").key_sha256
    assert alice.removeprefix("/r/") not in exported.text and digest not in exported.text  # never the key
    assert document["glossary"] == [
        {"lang_src": "en", "lang_dst": "es", "term": term, "translation": translation}
        for term, translation in (("Konoha", "la Hoja"), ("Naruto", "Naruto-kun"))]
    assert document["model_choices"] == [
        {"kind": "box", "lang_src": "ja", "lang_dst": "", "model": "rapidocr/ppocr-v4-det"},
        {"kind": "ocr", "lang_src": "ja", "lang_dst": "", "model": "tesseract/jpn_vert"}]
    missing = client.get("/profiles/export/", params={"name": "nobody"}, headers=OPERATOR)
    assert missing.status_code == 404 and "nobody" in missing.json()["error"]

    body = {"name": "bea", "profile": document}
    assert client.post("/profiles/import/", json=body, headers=ELSEWHERE).status_code == 401
    assert service.store.profile_named("bea") is None
    made = client.post("/profiles/import/", json=body, headers=OPERATOR_ELSEWHERE)
    assert made.status_code == 200, made.text
    bea = made.json()["path"]
    assert made.json()["name"] == "bea" and bea.startswith("/r/") and bea != alice
    hello = client.get(f"{bea}/", headers=ELSEWHERE).json()
    assert (hello["lang_src"], hello["lang_dst"], hello["tsl_selected"]) == ("en", "es", "apertium/eng-spa")
    assert client.get(f"{bea}/get_glossary/", headers=ELSEWHERE).json()["terms"] == {
        "Naruto": "Naruto-kun", "Konoha": "la Hoja"}
    assert service.store.find_manual_translations(["Hello there"], "en", "es",
                                                  service.store.profile_named("bea").id) == {
        "Hello there": "¡Hola, tú!"}
    again = client.get("/profiles/export/", params={"name": "bea"}, headers=OPERATOR).json()
    assert {**again, "exported": None} == {**document, "name": "bea", "exported": None}  # the same profile
    assert client.post(f"{bea}/set_lang/", json={"lang_src": "ja", "lang_dst": "en"}).status_code == 200
    hello = client.get(f"{bea}/", headers=ELSEWHERE).json()  # Japanese again: the models alice chose for it
    assert (hello["box_selected"], hello["ocr_selected"]) == ("rapidocr/ppocr-v4-det", "tesseract/jpn_vert")


def test_an_import_into_a_taken_name_of_a_foreign_document_or_over_the_caps_stores_nothing(served):
    client, service = served
    _alice(client, service.store)
    document = client.get("/profiles/export/", params={"name": "alice"}, headers=OPERATOR).json()
    before = service.store.counts(), [profile.name for profile in service.store.profiles()]

    taken = client.post("/profiles/import/", json={"name": "alice", "profile": document}, headers=OPERATOR)
    assert taken.status_code == 400 and "exists already" in taken.json()["error"]
    foreign = client.post("/profiles/import/", json={"name": "bob", "profile": {"settings": {"lang": "en"}}},
                          headers=OPERATOR)
    assert foreign.status_code == 400 and "'profile.format'" in foreign.json()["error"]
    newer = client.post("/profiles/import/", json={"name": "bob", "profile": {**document, "version": 3}},
                        headers=OPERATOR)
    assert newer.status_code == 400 and "'profile.version'" in newer.json()["error"]
    bad_choice = {**document, "model_choices": [{**document["model_choices"][0], "kind": "det"}]}
    refused = client.post("/profiles/import/", json={"name": "bob", "profile": bad_choice}, headers=OPERATOR)
    assert refused.status_code == 400 and "'profile.model_choices.0.kind'" in refused.json()["error"]
    old = {key: value for key, value in document.items() if key != "model_choices"}
    assert client.post("/profiles/import/", json={"name": "bob", "profile": {**old, "version": 1}},
                       headers=OPERATOR).status_code == 200  # exported before model choices were
    assert service.store.model_choices(service.store.profile_named("bob").id) == []
    assert client.post("/profiles/revoke/", json={"name": "bob"}, headers=OPERATOR).status_code == 200
    over = {**document, "glossary": [*document["glossary"], {**document["glossary"][0], "term": "Sasuke"}]}
    refused = client.post("/profiles/import/", json={"name": "bob", "profile": over}, headers=OPERATOR)
    assert refused.status_code == 403
    assert "3 glossary terms" in refused.json()["error"] and "profiles.max_glossary_terms: 2" in refused.json()["error"]
    assert (service.store.counts(), [profile.name for profile in service.store.profiles()]) == before
