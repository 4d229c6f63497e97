"""The operator's bounds on reader profiles (`profiles.*` in the config, issue 27): which models a profile
may select and whether it may start a download, its share of the requests in flight, its hour's new
results and its caps on manual translations and glossary terms. They hold under `/r/<key>/` only: the
bare paths (the default profile) keep their own rules. Over real HTTP (uvicorn in process, fake model
stages), and in the service where HTTP adds nothing."""

import asyncio
import concurrent.futures
import contextlib
import threading

import httpx
import pytest
import yaml

from core.errors import BadRequest, Forbidden, StoreUnavailable
from core.profile_keys import key_digest, new_key, short_id
from core.settings import API_TOKEN_ENV, AppArgs, ProfileSettings, WeightSources
from core.slots import chosen
from deployments.http_app import build_http_app
from models_registry import Registry
from models_registry.hub_downloads import Download
from service.jobs import Overrides
from tests.support.http_servers import serving
from tests.support.images import TWO_PARAGRAPHS, encode, render
from tests.support.live import held_upload
from tests.support.services import FakeStages, in_process_service
from tests.support.waiting import wait_for

TOKEN = "operator-token-3b9d"
OPERATOR = {"Authorization": f"Bearer {TOKEN}"}
ELSEWHERE = {"X-Forwarded-For": "203.0.113.9"}
"""A reader on another machine, as a relay in front of the server says: no rights of this machine's."""
EN_ES = {"lang_src": "en", "lang_dst": "es"}
MODELS = {"box_model_id": "easyocr/craft", "ocr_model_id": "tesseract/eng", "tsl_model_id": "apertium/eng-spa"}


@pytest.fixture
def serve(tmp_path, monkeypatch):
    """Serve the HTTP app with these `profiles` and `limits` settings: the client, the app and its service."""
    monkeypatch.setenv(API_TOKEN_ENV, TOKEN)
    with contextlib.ExitStack() as stack:
        def start(profiles: dict, limits: dict | None = None):
            args = AppArgs(data_dir=tmp_path, profiles=profiles, limits=limits or {})
            service = in_process_service(args.resolved_database_url, FakeStages(), args.limits,
                                         profiles=args.profiles)
            app = build_http_app(service, args)
            port = stack.enter_context(serving(app))
            client = stack.enter_context(httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30))
            return client, app, service

        yield start


def make_profile(client: httpx.Client, name: str) -> str:
    made = client.post("/profiles/", json={"name": name}, headers=OPERATOR)
    assert made.status_code == 200, made.text
    return made.json()["path"]


def profile_id(service, name: str) -> int:
    return next(profile.id for profile in service.store.profiles() if profile.name == name)


def set_up(client: httpx.Client, where: str, models: dict = MODELS) -> None:
    headers = {} if where else OPERATOR
    assert client.post(f"{where}/set_lang/", json=EN_ES, headers=headers).status_code == 200
    assert client.post(f"{where}/set_models/", json=models, headers=headers).status_code == 200


# -- 1. the models a profile may select --------------------------------------------------------------
def test_a_profile_selects_and_is_offered_only_the_models_the_operator_allows(serve):
    client, _, service = serve({"allowed_models": list(MODELS.values())})
    alice = make_profile(client, "alice")
    set_up(client, alice)
    before = service.store.selection(profile_id(service, "alice"))
    refused = client.post(f"{alice}/set_models/", json={"tsl_model_id": "original"}, headers=ELSEWHERE)
    assert refused.status_code == 403
    assert "'original'" in refused.json()["error"] and "profiles.allowed_models" in refused.json()["error"]
    assert service.store.selection(profile_id(service, "alice")) == before  # nothing stored
    assert client.get(f"{alice}/").json()["TSLModels"] == ["apertium/eng-spa"]
    set_up(client, "", {**MODELS, "tsl_model_id": "original"})  # the bare paths: as they always were
    assert "original" in client.get("/").json()["TSLModels"]


def with_a_metered_model(tmp_path, profiles: ProfileSettings):
    """The built-in models and `llm/es`, a language model of the openai family (it calls a server per
    request: metered; the fake stages never call it)."""
    entries = tmp_path / "entries"
    entries.mkdir(parents=True)
    (entries / "llm.yaml").write_text(yaml.safe_dump([{
        "id": "llm/es", "kind": "tsl", "backend": "openai", "languages": ["en"], "languages_dst": ["es"],
        "settings": {"base_url": "http://127.0.0.1:9/v1", "model": "any"}}]))
    service = in_process_service(tmp_path, FakeStages(), registry=Registry.load([entries]), profiles=profiles)
    alice = service.store.create_profile("alice", key_digest(new_key())).id
    for profile in (1, alice):
        asyncio.run(service.catalogue.set_lang("en", "es", profile))
    return service, alice


def test_a_model_that_calls_a_server_is_a_profiles_only_when_the_operator_lists_it(tmp_path):
    service, alice = with_a_metered_model(tmp_path / "any", ProfileSettings())
    with pytest.raises(Forbidden, match=r"'llm/es' calls a server per request.*profiles\.allowed_models"):
        asyncio.run(service.catalogue.set_models(chosen(tsl="llm/es"), alice))
    assert "llm/es" not in asyncio.run(service.catalogue.handshake(alice)).TSLModels
    assert "apertium/eng-spa" in asyncio.run(service.catalogue.handshake(alice)).TSLModels  # the others: all
    assert asyncio.run(service.catalogue.set_models(chosen(tsl="apertium/eng-spa"), alice)) is None
    assert "llm/es" in asyncio.run(service.catalogue.handshake()).TSLModels  # the default profile's rules
    assert asyncio.run(service.catalogue.set_models(chosen(tsl="llm/es"))) is None

    service, alice = with_a_metered_model(tmp_path / "listed", ProfileSettings(allowed_models=["llm/es"]))
    assert asyncio.run(service.catalogue.handshake(alice)).TSLModels == ["llm/es"]
    assert asyncio.run(service.catalogue.set_models(chosen(tsl="llm/es"), alice)) is None
    assert service.store.selection(alice).models.tsl == "llm/es"


# -- 2. downloads from the hub -----------------------------------------------------------------------
class RecordedDownloads:
    """Downloads that start and never finish, each start recorded."""

    def __init__(self):
        self.started: list[str] = []

    def start(self, repo, revision=None, rules=None) -> Download:
        self.started.append(repo)
        return Download(repo, "downloading")

    def state(self, repo):
        return None

    def states(self):
        return {}


def test_a_profile_starts_a_download_only_where_the_operator_allows_it(tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    missing = "Helsinki-NLP/opus-mt-ja-en"
    weights = WeightSources(hub_downloads=True, allow_unpinned_downloads=True, models_dirs=[tmp_path / "none"])
    for downloads_allowed in (False, True):
        downloads = RecordedDownloads()
        registry = Registry.load(weights=weights)
        assert registry.availability(missing).download == missing  # its weights would be downloaded
        service = in_process_service(f"sqlite:///{tmp_path}/{downloads_allowed}.db", FakeStages(), registry=registry,
                                     downloads=downloads, profiles=ProfileSettings(hub_downloads=downloads_allowed))
        alice = service.store.create_profile("alice", key_digest(new_key())).id
        asyncio.run(service.catalogue.set_lang("ja", "en", alice))
        offered = asyncio.run(service.catalogue.handshake(alice)).TSLModels
        if downloads_allowed:
            assert missing in offered
            assert "downloading" in asyncio.run(service.catalogue.set_models(chosen(tsl=missing), alice))
            assert downloads.started == [missing] and service.store.selection(alice).models.tsl == missing
            continue
        assert missing not in offered
        with pytest.raises(BadRequest, match=r"not available.*may not start their download.*profiles\.hub_downloads"):
            asyncio.run(service.catalogue.set_models(chosen(tsl=missing), alice))
        assert downloads.started == [] and service.store.selection(alice).models.tsl == "original"  # set_lang's
        assert "downloading" in asyncio.run(service.catalogue.set_models(chosen(tsl=missing)))  # the bare paths'
        assert downloads.started == [missing]


# -- 3. a profile's share of the requests in flight ----------------------------------------------------
def test_requests_in_flight_are_counted_per_profile_under_its_address_and_per_client_elsewhere(serve):
    client, app, _ = serve({"max_requests_in_flight": 2},
                           {"max_requests_in_flight_per_client": 2, "max_requests_in_flight": 20})
    alice, bob = make_profile(client, "alice"), make_profile(client, "bob")
    alice_id = short_id(key_digest(alice.removeprefix("/r/")))
    counts, url, release = app.state.in_flight, str(client.base_url), threading.Event()
    with concurrent.futures.ThreadPoolExecutor(5) as pool:
        try:
            flood = [pool.submit(held_upload, url + alice, release) for _ in range(3)]
            wait_for(lambda: counts.by_profile[alice_id] == 2, 30, "alice's share filling", interval_s=0.05)
            assert dict(counts.by_profile) == {alice_id: 2} and not counts.by_client  # never keyed by key
            busy = client.get(f"{alice}/")
            assert busy.status_code == 503 and busy.headers["Retry-After"] == "1"
            assert "This reader profile has 2 requests in flight, its share" in busy.json()["error"]
            # the same address on the bare paths and another profile: their own shares
            assert client.get(f"{bob}/").status_code == 200 and client.get("/").status_code == 200

            bare = [pool.submit(held_upload, url, release) for _ in range(2)]
            wait_for(lambda: counts.by_client["127.0.0.1"] == 2, 30, "the client's share filling", interval_s=0.05)
            unknown = client.get("/r/" + "A" * 32 + "/")  # a key no profile has: the address's share
            assert unknown.status_code == 503 and "the most one client may" in unknown.json()["error"]
            assert client.get(f"{bob}/").status_code == 200
        finally:
            release.set()
        assert sorted(future.result() for future in flood) == [503, 512, 512]  # 512: alice chose no languages
        assert [future.result() for future in bare] == [512, 512]
    assert counts.total == 0 and not counts.by_profile and not counts.by_client


def test_a_profiles_key_is_looked_up_once_per_request(serve):
    client, app, _ = serve({})
    alice = make_profile(client, "alice")
    profiles, looked_up = app.state.api.profiles, []
    find = profiles.find
    profiles.find = lambda key: looked_up.append(key) or find(key)
    assert client.post(f"{alice}/set_lang/", json=EN_ES).status_code == 200
    assert looked_up == [alice.removeprefix("/r/")]  # by the in-flight limit; the handler took its answer
    assert client.get("/r/" + "A" * 32 + "/").status_code == 404
    assert len(looked_up) == 2

    def unavailable(key):
        raise StoreUnavailable()

    profiles.find = unavailable  # before routing too: the handler answers why, as on any path
    answer = client.get(f"{alice}/")
    assert answer.status_code == 503 and answer.headers["Retry-After"] == "5" and "database" in answer.json()["error"]


# -- 4. a profile's hour of new results ---------------------------------------------------------------
def test_a_profiles_new_results_are_counted_per_profile_wherever_they_come_from(serve):
    client, _, _ = serve({"max_new_results_per_hour": 2}, {"max_new_results_per_client_per_hour": 100})
    alice, bob = make_profile(client, "alice"), make_profile(client, "bob")
    for where in (alice, bob, ""):
        set_up(client, where)
    for text in ("one", "two"):
        assert client.post(f"{alice}/run_tsl/", json={"text": text}, headers=ELSEWHERE).status_code == 200
    for sender in (ELSEWHERE, {"X-Forwarded-For": "198.51.100.4"}):
        refused = client.post(f"{alice}/run_tsl/", json={"text": "three"}, headers=sender)
        assert refused.status_code == 429
        assert refused.json()["error"].startswith("This reader profile had 2 new results computed in the last hour")
    assert client.post(f"{alice}/run_tsl/", json={"text": "one"}, headers=ELSEWHERE).status_code == 200  # stored
    assert client.post(f"{bob}/run_tsl/", json={"text": "three"}, headers=ELSEWHERE).status_code == 200
    assert client.post("/run_tsl/", json={"text": "four"}, headers=ELSEWHERE).status_code == 200


# -- 5. caps on what a profile keeps -------------------------------------------------------------------
def test_a_profile_keeps_at_most_its_caps_of_glossary_terms_and_manual_translations(serve):
    client, _, service = serve({"max_glossary_terms": 2, "max_manual_translations": 1})
    alice = make_profile(client, "alice")
    for where in (alice, ""):
        set_up(client, where)

    def term(where: str, name: str, translation: str = "x", **pair) -> httpx.Response:
        return client.post(f"{where}/set_glossary_term/", json={"term": name, "translation": translation, **pair},
                           headers={} if where else OPERATOR)

    assert term(alice, "Naruto").status_code == 200
    assert term(alice, "Sasuke", lang_src="en", lang_dst="fr").status_code == 200  # every pair counts
    before = service.store.counts()
    full = term(alice, "Sakura")
    assert full.status_code == 403
    assert "keeps 2 glossary terms" in full.json()["error"] and "profiles.max_glossary_terms" in full.json()["error"]
    assert service.store.counts() == before
    assert term(alice, "Naruto", "Naruto-kun").status_code == 200  # a new translation of a term: room enough
    assert client.post(f"{alice}/delete_glossary_term/", json={"term": "Sasuke", "lang_src": "en",
                                                                "lang_dst": "fr"}).status_code == 200
    assert term(alice, "Sakura").status_code == 200
    assert [term("", name).status_code for name in ("a", "b", "c")] == [200] * 3  # the default: not capped

    contents, md5 = encode(render(TWO_PARAGRAPHS))
    texts = [b["ocr"] for b in client.post(f"{alice}/run_ocrtsl/", json={"contents": contents, "md5": md5}).json()[
        "result"]]

    def manual(where: str, text: str, translation: str = "Mía") -> httpx.Response:
        return client.post(f"{where}/set_manual_translation/", json={"text": text, "translation": translation},
                           headers={} if where else OPERATOR)

    assert manual(alice, texts[0]).status_code == 200
    full = manual(alice, texts[1])
    assert full.status_code == 403 and "keeps 1 manual translations" in full.json()["error"]
    assert "profiles.max_manual_translations" in full.json()["error"]
    assert service.store.count_manual_translations(profile_id(service, "alice")) == 1
    assert manual(alice, texts[0], "Otra").status_code == 200  # replacing one: allowed
    assert [manual("", text).status_code for text in texts] == [200, 200]


def test_a_full_replica_answers_503_before_looking_any_key_up():
    """A flood of made-up keys cannot make a full replica ask its store for each."""
    from deployments.backpressure import InFlight, InFlightLimit

    async def never(scope):
        raise AssertionError("looked a key up")

    async def app(scope, receive, send):
        raise AssertionError("served")

    sent = []

    async def send(message):
        sent.append(message)

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    limit = InFlightLimit(app, limit=2, per_client=2, per_profile=2, counts=InFlight(total=2), profile_of=never)
    scope = {"type": "http", "method": "GET", "path": "/r/" + "A" * 32 + "/", "headers": [], "client": ("1.2.3.4", 1)}
    asyncio.run(limit(scope, receive, send))
    assert sent[0]["status"] == 503 and b"retry-after" in [name.lower() for name, _ in sent[0]["headers"]]


def test_a_narrower_list_of_allowed_models_holds_at_once_for_what_a_profile_selected_before(tmp_path):
    """The operator narrows `profiles.allowed_models` (a redeploy, the same store): a model a profile chose
    before is refused from its next request on, saying why; the default profile keeps it."""
    url = f"sqlite:///{tmp_path}/s.db"
    before = in_process_service(url, FakeStages(), profiles=ProfileSettings())
    alice = before.store.create_profile("alice", key_digest(new_key())).id
    for profile in (1, alice):
        asyncio.run(before.catalogue.set_lang("en", "es", profile))
        asyncio.run(before.catalogue.set_models(chosen(tsl="apertium/eng-spa"), profile))
    assert asyncio.run(before.pipeline.run_tsl("hello", Overrides(profile=alice), None)) == "HELLO"
    after = in_process_service(url, FakeStages(), profiles=ProfileSettings(allowed_models=["original"]))
    with pytest.raises(Forbidden, match="profiles.allowed_models"):
        asyncio.run(after.pipeline.run_tsl("hello", Overrides(profile=alice), None))
    assert asyncio.run(after.pipeline.run_tsl("hello", Overrides(), None)) == "HELLO"
