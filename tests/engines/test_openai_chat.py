"""The `openai` family (language models behind an OpenAI-compatible chat server) against a scripted
server on loopback: a page per request in reading order, the schema answer and the fallback when a
server ignores it, retries, timeouts, the concurrency bound, the API key, and load-time checks."""

import concurrent.futures
import json

import httpx
import pytest
import yaml

from core.errors import BadGateway, BadRequest, GatewayTimeout, ModelLoadError, ServerBusy, Unauthorized
from core.glossary import NO_TERMS, Glossary
from core.options import resolve
from core.settings import SecuritySettings
from core.slots import chosen
from inference.translation import translate_texts
from models_registry import ModelEntry
from models_registry.backends import openai_chat
from models_registry.backends.base import Runtime
from models_registry.registry import _with_declared_options
from tests.support.fake_chat_server import MODEL, FakeChatServer, translated
from tests.support.images import TWO_PARAGRAPHS, encode, render
from tests.support.paths import ROOT
from tests.support.services import in_process_service

PAGE = ["Where are you going?", "To the station.", "Wait for me!"]


@pytest.fixture(scope="module")
def server():
    server = FakeChatServer()
    yield server
    server.stop()


def entry(server: FakeChatServer, **settings) -> ModelEntry:
    item = {"id": "llm/test", "kind": "tsl", "backend": "openai", "languages": ["en", "ja"],
            "languages_dst": ["es", "en"],
            "settings": {"base_url": server.base_url, "model": MODEL, "max_retries": 0, **settings}}
    return ModelEntry.model_validate(_with_declared_options(item, "test"))


def load(server: FakeChatServer, **settings) -> openai_chat.OpenAIChatTranslator:
    openai_chat._SLOTS.clear()  # each test sizes its server's slots anew
    return openai_chat.OpenAIChatTranslator(entry(server, **settings), Runtime())


def options(backend, **given) -> dict:
    return resolve(backend.entry.option_specs, given)


def test_a_page_is_one_request_in_reading_order_with_a_schema_answer(server):
    script = server.reset()
    backend = load(server)
    assert backend.translate(PAGE, "en", "es", options(backend)) == [translated(t, "Spanish") for t in PAGE]
    [request] = script.requests
    assert request["model"] == MODEL and request["temperature"] == 0.2 and request["max_tokens"] == 2048
    system, user = request["messages"]
    assert "from English to Spanish" in system["content"]
    assert json.loads(user["content"]) == {"1": PAGE[0], "2": PAGE[1], "3": PAGE[2]}
    assert list(json.loads(user["content"])) == ["1", "2", "3"]
    schema = request["response_format"]["json_schema"]["schema"]
    assert schema["required"] == ["1", "2", "3"] and schema["additionalProperties"] is False


def test_the_schema_is_asked_for_as_the_server_takes_it(server):
    for response_format, asked in (("json_object", "schema"), ("none", None)):
        script = server.reset()
        backend = load(server, response_format=response_format)
        assert backend.translate(PAGE, "en", "es", options(backend)) == [translated(t, "Spanish") for t in PAGE]
        [request] = script.requests  # one page either way
        if asked is None:
            assert "response_format" not in request
        else:
            assert request["response_format"]["type"] == "json_object"
            assert request["response_format"]["schema"]["required"] == ["1", "2", "3"]


def test_through_the_translator_stage_texts_keep_their_reading_order(server):
    """The Translator's page path: the pipeline's texts go to the model as the page reads, not sorted."""
    script = server.reset()
    backend = load(server)
    page = ["Zebra crossing ahead", "A", "Mind the gap"]
    assert translate_texts(backend, page, "en", "es", options(backend)) == [
        translated(t, "Spanish") for t in page]
    assert list(json.loads(script.requests[0]["messages"][1]["content"]).values()) == page


def test_the_pages_glossary_terms_are_in_the_prompt_of_the_page_and_of_each_block(server):
    terms = Glossary.of({"station": "estación", "Zorblax": "Zorblaxito"})
    backend = load(server)
    for broken, requests in (({}, 1), ({"ignore_schema": True}, 1 + len(PAGE))):
        script = server.reset(**broken)
        page = translate_texts(backend, PAGE, "en", "es", options(backend), terms)
        assert page == [translated(text, "Spanish", {"station": "estación"}) for text in PAGE]
        assert page[1] == "Spanish: TO THE estación."
        assert len(script.requests) == requests
        for request in script.requests:  # only the page's terms: Zorblax is not on it
            assert request["messages"][0]["content"].endswith(
                'Always translate these terms exactly as given (term: translation): {"station": "estación"}')


@pytest.mark.parametrize("broken", [{"ignore_schema": True}, {"drop_last_block": True}])
def test_a_server_that_ignores_the_schema_gets_one_request_per_block(server, broken):
    script = server.reset(**broken)
    backend = load(server)
    assert backend.translate(PAGE, "en", "es", options(backend)) == [translated(t, "Spanish") for t in PAGE]
    assert len(script.requests) == 1 + len(PAGE)
    assert [r["messages"][1]["content"] for r in script.requests[1:]] == PAGE
    assert all("response_format" not in r for r in script.requests[1:])


def test_the_block_by_block_fallback_is_bounded_per_page(server):
    """A server ignoring the schema would turn a long page into one metered call per block."""
    script = server.reset(ignore_schema=True)
    backend = load(server, max_fallback_blocks=2)
    with pytest.raises(BadGateway, match="its 3 blocks are more than the 2 translated one request each"):
        backend.translate_page(PAGE, "en", "es", options(backend), NO_TERMS)
    assert len(script.requests) == 1  # the page, and no block after it
    assert backend.translate_page(PAGE[:2], "en", "es", options(backend), NO_TERMS) == [
        translated(text, "Spanish") for text in PAGE[:2]]


def test_a_client_without_the_token_runs_a_metered_model_with_its_entrys_options(server, tmp_path):
    """temperature and max_tokens cost money on a paid API: per request only within the operator's ranges."""
    from models_registry import Registry
    from service.jobs import Overrides

    (tmp_path / "llm.yaml").write_text(yaml.safe_dump([{
        "id": "llm/test", "kind": "tsl", "backend": "openai", "languages": ["en"], "languages_dst": ["es"],
        "settings": {"base_url": server.base_url, "model": MODEL}}]))
    security = SecuritySettings(client_option_ranges={"llm/test": {"temperature": (0, 1)}})
    service = in_process_service(tmp_path, None, registry=Registry.load([tmp_path]), security=security)
    service.store.update_selection(lang_src="en", lang_dst="es", models=chosen(tsl="llm/test"))

    def job(values, any_model=False):
        return service.pipeline.jobs.resolve(Overrides(any_model=any_model), {"llm/test": values}, False)

    assert job({}).route.tsl.options["temperature"] == 0.2  # the entry's own
    assert job({"temperature": 0.9}).route.tsl.options["temperature"] == 0.9  # within the operator's range
    for refused, reason in (({"temperature": 1.5}, "allowed: 0 to 1"), ({"max_tokens": 16384}, "max_tokens")):
        with pytest.raises(Unauthorized, match=reason):
            job(refused)
    assert job({"temperature": 1.5, "max_tokens": 16384}, any_model=True).route.tsl.options["max_tokens"] == 16384


def test_options_reach_the_server_within_their_bounds(server):
    script = server.reset()
    backend = load(server)
    backend.translate(["Hello"], "en", "es", options(backend, temperature="0", max_tokens="64"))
    assert (script.requests[0]["temperature"], script.requests[0]["max_tokens"]) == (0, 64)
    with pytest.raises(BadRequest, match="temperature"):
        options(backend, temperature="3")
    with pytest.raises(BadRequest, match="max_tokens"):
        options(backend, max_tokens="100000")


def test_server_errors_are_retried_then_answered_502(server):
    script = server.reset(failures=2)
    backend = load(server, max_retries=2)
    assert backend.translate(["Hello"], "en", "es", options(backend)) == ["Spanish: HELLO"]
    assert len(script.requests) == 3  # two 500s, then the answer
    script = server.reset(failures=10)
    with pytest.raises(BadGateway, match="answered 500") as failed:
        backend.translate(["Hello"], "en", "es", options(backend))
    assert failed.value.status == 502 and len(script.requests) == 3


def test_clients_never_see_the_servers_address_or_words(server, caplog):
    """The base URL may hold credentials or name a private host, and an upstream body may hold anything:
    errors name the model entry and what failed; the log keeps the rest for the operator."""
    backend = load(server, max_retries=0)
    script = server.reset(failures=10)
    with pytest.raises(BadGateway) as failed:
        backend.translate(["Hello"], "en", "es", options(backend))
    assert script.requests
    message = failed.value.message
    assert backend.entry.id in message and "answered 500" in message
    assert server.base_url not in message and "127.0.0.1" not in message and "the model crashed" not in message
    assert server.base_url in caplog.text and "the model crashed" in caplog.text
    reason = openai_chat.OpenAIChatTranslator.missing_weights(entry(server, api_key_env="OCR_SERVE_ABSENT_KEY"), None)
    assert "OCR_SERVE_ABSENT_KEY" in reason and "127.0.0.1" not in reason  # shown by the handshake's plugin data


def test_a_slow_server_is_answered_504(server):
    server.reset()
    backend = load(server, timeout_s=1)
    server.reset(delay_s=3)
    with pytest.raises(GatewayTimeout, match="did not answer within 1 s") as slow:
        backend.translate(["Hello"], "en", "es", options(backend))
    assert slow.value.status == 504


def test_calls_in_flight_are_bounded_per_server_and_the_rest_answered_503(server):
    """Eight pages at once to a slow server that one replica may send two at a time: the server never
    holds more than two; pages that wait past queue_timeout_s get the busy answer, the rest translate."""
    server.reset()
    backend = load(server, max_concurrent=2, queue_timeout_s=1)
    script = server.reset(delay_s=3)
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(backend.translate, [f"Page {i}"], "en", "es", options(backend)) for i in range(8)]
    outcomes = [future.exception() or future.result() for future in futures]
    assert script.most_in_flight == 2
    busy = [outcome for outcome in outcomes if isinstance(outcome, ServerBusy)]
    done = [outcome for outcome in outcomes if isinstance(outcome, list)]
    assert len(busy) + len(done) == 8 and len(done) >= 2 and busy
    assert busy[0].status == 503 and "busy with 2 requests" in busy[0].message


def test_the_api_key_comes_from_the_named_environment_variable(server, monkeypatch):
    named = entry(server, api_key_env="TEST_LLM_KEY")
    monkeypatch.delenv("TEST_LLM_KEY", raising=False)
    assert "TEST_LLM_KEY" in openai_chat.OpenAIChatTranslator.missing_weights(named, None)
    monkeypatch.setenv("TEST_LLM_KEY", "sk-test-123")
    assert openai_chat.OpenAIChatTranslator.missing_weights(named, None) is None
    script = server.reset()
    backend = load(server, api_key_env="TEST_LLM_KEY")
    backend.translate(["Hello"], "en", "es", options(backend))
    assert script.headers[0]["authorization"] == "Bearer sk-test-123"


def test_loading_checks_the_server_and_the_model(server):
    with pytest.raises(ModelLoadError, match="serves no model 'other'"):
        load(server, model="other")
    closed = FakeChatServer()
    base_url = closed.base_url
    closed.stop()
    with pytest.raises(ModelLoadError, match="could not be reached"):
        openai_chat._SLOTS.clear()
        openai_chat.OpenAIChatTranslator(entry(server, base_url=base_url), Runtime())


def test_entry_settings_are_checked_when_entries_load(server):
    with pytest.raises(ValueError):
        openai_chat.OpenAIChatSettings.model_validate({"base_url": "ftp://x", "model": "m"})
    with pytest.raises(ValueError):
        openai_chat.OpenAIChatSettings.model_validate({"base_url": server.base_url, "model": "m", "api_key": "x"})


LLM_APP, LLM_PREFIX, LLM_MODEL = "ocr_translate_llm", "/llm", "llm/scripted"


@pytest.fixture(scope="module")
def llm_app(live, server, tmp_path_factory):
    """A second application whose registry has an `openai` entry pointing at the scripted server."""
    from tests.support.live import AUTH, second_app

    entries = tmp_path_factory.mktemp("llm-entries")
    (entries / "llm.yaml").write_text(yaml.safe_dump([{
        "id": LLM_MODEL, "kind": "tsl", "backend": "openai", "description": "A scripted chat server.",
        "languages": ["en"], "languages_dst": ["es"],
        "settings": {"base_url": server.base_url, "model": MODEL, "max_retries": 1, "timeout_s": 4,
                     "max_concurrent": 1, "queue_timeout_s": 1}}]))
    args = {"registry_dirs": [*live.app_args["registry_dirs"], str(entries)], "preload_selected_models": False}
    with (second_app(live, LLM_APP, LLM_PREFIX, tmp_path_factory.mktemp("llm-data"), **args) as url,
          httpx.Client(base_url=url, headers=AUTH, timeout=60) as http):
        yield http


def test_a_page_is_translated_by_the_language_model_through_the_server(llm_app, server):
    """OCR of a rendered page, then one chat request with its blocks in reading order; the answers
    of a failing, slow or busy chat server reach the client as 502, 504 and 503 with Retry-After."""
    http = llm_app
    server.reset()
    assert http.post("/set_lang/", json={"lang_src": "en", "lang_dst": "es"}).status_code == 200
    assert LLM_MODEL in http.get("/").json()["TSLModels"]
    response = http.post("/set_models/", json={"tsl_model_id": LLM_MODEL})
    assert response.status_code == 200, response.text
    contents, md5 = encode(render(TWO_PARAGRAPHS))
    script = server.reset()
    result = http.post("/run_ocrtsl/", json={"contents": contents, "md5": md5}).json()["result"]
    joined = [" ".join(block["ocr"].split()) for block in result]  # lines joined before translating
    assert len(result) == 2 and [block["tsl"] for block in result] == [translated(text, "Spanish") for text in joined]
    [page] = script.requests  # both blocks in one request, top to bottom
    assert list(json.loads(page["messages"][1]["content"]).values()) == joined

    server.reset(failures=10)
    failed = http.post("/run_tsl/", json={"text": "A server that fails"})
    assert failed.status_code == 502 and "answered 500" in failed.json()["error"]
    server.reset(delay_s=6)
    slow = http.post("/run_tsl/", json={"text": "A server that is slow"})
    assert slow.status_code == 504 and "did not answer within 4 s" in slow.json()["error"]
    server.reset(delay_s=2.5)
    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        answers = list(pool.map(lambda i: http.post("/run_tsl/", json={"text": f"Busy number {i}"}), range(3)))
    busy = [answer for answer in answers if answer.status_code == 503]
    assert busy and {answer.status_code for answer in answers} <= {200, 503}, [a.text for a in answers]
    assert busy[0].headers["Retry-After"] == "1" and "is busy with 1 requests" in busy[0].json()["error"]

    server.reset()
    assert http.post("/set_glossary_term/", json={"term": "Zorblax", "translation": "Zorblaxito"}).json() == {}
    assert http.post("/run_tsl/", json={"text": "Hello Zorblax"}).json() == {"text": "Spanish: HELLO Zorblaxito"}


def test_the_documented_example_entry_is_valid():
    """The Ollama entry docs/models.md shows loads as written (entry and settings)."""
    guide = (ROOT / "docs" / "models.md").read_text()
    block = guide.split("```yaml\n# ~/ocr-models/llm.yaml")[1].split("\n", 1)[1].split("```")[0]
    [item] = yaml.safe_load(block)
    example = ModelEntry.model_validate(_with_declared_options(item, "docs/models.md"))
    settings = openai_chat.OpenAIChatSettings.model_validate(example.settings)
    assert (example.backend, settings.base_url, settings.model) == ("openai", "http://127.0.0.1:11434/v1", "qwen2.5:7b")
    assert example.option_specs["temperature"].default == 0.2
