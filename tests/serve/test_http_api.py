"""The extension's HTTP contract, end to end through a real local Serve app and real models."""

import concurrent.futures

import httpx
import pytest
from PIL import Image

from core.slots import ModelSlots
from tests.support.images import TWO_PARAGRAPHS, char_error_rate, encode, render
from tests.support.live import (
    ABSENT_TESSERACT,
    API_TOKEN,
    AUTH,
    IN_FLIGHT_LIMIT,
    MAX_BODY_BYTES,
    ocrtsl,
    reset_selection,
    second_app,
    select_models,
)
from tests.support.tiny_hf import MARIAN
from tests.support.waiting import wait_for

HUGE_IMAGE = encode(Image.new("1", (8000, 6000)))
"""48 million pixels in a small PNG file: refused before it is decoded."""
def test_handshake_offers_offline_languages_and_models(live):
    select_models(live)
    for path in ("/", "/get_active_options", "/get_active_options/", "/get_plugin_data", "/get_plugin_data/"):
        assert live.http.get(path).status_code == 200, path
    hello = live.http.get("/").json()
    assert {"en", "es"} <= set(hello["Languages_src"]) and "es" in hello["Languages_dst"]
    assert "easyocr/craft" in hello["BOXModels"]
    assert {"tesseract/eng", "easyocr/en"} <= set(hello["OCRModels"])
    assert "apertium/eng-spa" in hello["TSLModels"]
    assert (hello["box_selected"], hello["tsl_selected"], hello["lang_dst"]) == ("easyocr/craft", "apertium/eng-spa",
                                                                                   "es")
    plugins = live.http.get("/get_plugin_data/").json()
    assert {"easyocr", "tesseract", "apertium", "original"} <= set(plugins)
    assert set(plugins["apertium"]) == {"name", "version", "description", "homepage", "warning", "installed"}


def test_ocr_and_translation_of_a_rendered_image_then_lazy_and_forced(live):
    select_models(live)
    contents, md5 = encode(render(TWO_PARAGRAPHS))
    assert ocrtsl(live, md5=md5).status_code == 406
    response = ocrtsl(live, md5=md5, contents=contents)
    assert response.status_code == 200, response.text
    result = response.json()["result"]
    assert len(result) == 2  # one block per paragraph, not per line
    for block, (_, truth) in zip(result, TWO_PARAGRAPHS, strict=True):
        assert char_error_rate(block["ocr"], truth) < 0.1, block["ocr"]
        l, b, r, t = block["box"]
        assert l < r and b < t
    assert "zorro" in result[0]["tsl"] and "perro" in result[0]["tsl"]
    assert "Hola" in result[1]["tsl"] and "prueba" in result[1]["tsl"]
    assert ocrtsl(live, md5=md5).json()["result"] == result  # lazy hit
    before = live.stats("BoxDetector")["calls"].get("easyocr/craft", 0)
    assert ocrtsl(live, md5=md5, contents=contents, force=True).json()["result"] == result
    assert live.stats("BoxDetector")["calls"]["easyocr/craft"] == before + 1


def test_per_request_models_use_the_easyocr_line_reader(live):
    select_models(live)
    contents, md5 = encode(render([((40, 40), "Reading lines one by one\nwith EasyOCR works.")]))
    response = ocrtsl(live, md5=md5, contents=contents, ocr_model_id="easyocr/en", tsl_model_id="original")
    assert response.status_code == 200, response.text
    [block] = response.json()["result"]
    assert char_error_rate(block["ocr"], "Reading lines one by one with EasyOCR works.") < 0.1, block["ocr"]
    assert block["tsl"] == " ".join(block["ocr"].split())  # the pass-through model, lines joined
    assert live.http.get("/").json()["ocr_selected"] == "tesseract/eng"  # the selection is untouched


def test_two_identical_calls_in_flight_run_the_models_once(live):
    select_models(live)
    contents, md5 = encode(render([((30, 30), "Only computed once,\nhowever many ask."), ((30, 250), "Second block")]))
    box_before = live.stats("BoxDetector")["calls"].get("easyocr/craft", 0)
    ocr_before = live.stats("OCRReader")["items"].get("tesseract/eng", 0)
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        first, second = pool.map(lambda _: ocrtsl(live, md5=md5, contents=contents), range(2))
    assert first.status_code == second.status_code == 200
    assert first.json() == second.json() and len(first.json()["result"]) == 2
    assert live.stats("BoxDetector")["calls"]["easyocr/craft"] == box_before + 1
    assert live.stats("OCRReader")["items"]["tesseract/eng"] == ocr_before + 2


def test_manual_translation_is_favoured_and_listed(live):
    select_models(live)
    contents, md5 = encode(render([((30, 30), "The red car is fast.")]))
    [block] = ocrtsl(live, md5=md5, contents=contents).json()["result"]
    text = block["ocr"]
    assert live.http.post("/set_manual_translation/", json={"text": text, "translation": "Mío"}).json() == {}
    assert ocrtsl(live, md5=md5).json()["result"][0]["tsl"] == "Mío"
    machine = ocrtsl(live, md5=md5, options={"apertium/eng-spa": {"favor_manual": False}}).json()["result"][0]
    assert machine["tsl"] == block["tsl"]
    translations = live.http.get("/get_trans/", params={"text": text}).json()["translations"]
    assert {"text": "Mío", "model": "manual"} in translations
    assert {"text": block["tsl"], "model": "apertium/eng-spa"} in translations
    unknown = live.http.post("/set_manual_translation/", json={"text": "never seen", "translation": "x"})
    assert unknown.status_code == 404 and "error" in unknown.json()
    assert live.http.get("/get_trans/", params={"text": "never seen"}).status_code == 404


def test_a_glossary_term_set_through_the_api_is_in_the_next_translation_of_each_family(live):
    """Apertium (a rule-based model that copies the placeholder) and a tiny random Marian model (which
    loses it: the text is translated around the term) both give the term the reader's translation."""
    select_models(live)
    before = live.http.post("/run_tsl/", json={"text": "Zorblax is my friend"}).json()["text"]
    assert "Zorblaxito" not in before
    try:
        assert live.http.post("/set_glossary_term/", json={"term": "Zorblax", "translation": "Zorblaxito"}).json() == {}
        assert live.http.get("/get_glossary/").json() == {
            "lang_src": "en", "lang_dst": "es", "terms": {"Zorblax": "Zorblaxito"}}
        translated = live.http.post("/run_tsl/", json={"text": "Zorblax is my friend"}).json()["text"]
        assert "Zorblaxito" in translated, translated
        contents, md5 = encode(render([((30, 30), "Zorblax is my friend.")]))
        [block] = ocrtsl(live, md5=md5, contents=contents).json()["result"]
        assert "Zorblax" in block["ocr"] and "Zorblaxito" in block["tsl"]
        pair = {"lang_src": "ja", "lang_dst": "en"}
        term = {"term": "猫", "translation": "Nekochan", **pair}
        assert live.http.post("/set_glossary_term/", json=term).json() == {}
        assert live.http.get("/get_glossary/", params=pair).json()["terms"] == {"猫": "Nekochan"}
        for text in ("猫が好きです", "黒い猫"):
            tsl = live.http.post("/run_tsl/", json={"text": text, **pair, "tsl_model_id": MARIAN}).json()["text"]
            assert "Nekochan" in tsl, tsl
    finally:
        live.http.post("/delete_glossary_term/", json={"term": "Zorblax"})
        live.http.post("/delete_glossary_term/", json={"term": "猫", "lang_src": "ja", "lang_dst": "en"})
    assert live.http.get("/get_glossary/").json()["terms"] == {}
    assert live.http.post("/run_tsl/", json={"text": "Zorblax is my friend"}).json()["text"] == before
    missing = live.http.post("/delete_glossary_term/", json={"term": "Zorblax"})
    assert missing.status_code == 404 and "no term 'Zorblax'" in missing.json()["error"]


def test_run_tsl_and_xunity_autotranslator(live):
    select_models(live)
    assert live.http.post("/run_tsl/", json={"text": "Good morning"}).json() == {"text": "Buenos días"}
    response = live.http.get("/run_tsl_xua", params={"text": "Good morning"})
    assert response.status_code == 200 and response.text == "Buenos días"
    assert response.headers["content-type"] == "text/plain; charset=utf-8"


def test_cors_answers_extension_origins_only(live):
    for origin in ("moz-extension://1234-abcd", "chrome-extension://abcdef"):
        preflight = live.http.options("/run_ocrtsl/", headers={
            "Origin": origin, "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type"})
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == origin
        assert live.http.get("/", headers={"Origin": origin}).headers["access-control-allow-origin"] == origin
    assert "access-control-allow-origin" not in live.http.get("/", headers={"Origin": "https://evil.example"}).headers
    for origin in ("http://localhost.evil.com", "http://127.0.0.1.evil.com", "moz-extension://x/../evil",
                   "http://localhost:3000", "http://127.0.0.1:8888"):  # a dev server's, a notebook's page
        refused = live.http.options("/run_ocrtsl/", headers={
            "Origin": origin, "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type"})
        assert refused.status_code == 400 and "access-control-allow-origin" not in refused.headers, origin
        assert "access-control-allow-origin" not in live.http.get("/", headers={"Origin": origin}).headers


def test_the_default_security_mode_through_serves_proxy(live, tmp_path):
    """`token_required_from: remote`, the default, in an application of its own behind Serve's proxy:
    this machine's clients change settings without the token; a client relayed by a proxy needs it."""
    with (second_app(live, "ocr_translate_remote_mode", "/remote-mode", tmp_path, security={}) as url,
          httpx.Client(base_url=url, timeout=60) as local):  # no token
        assert local.post("/set_lang/", json={"lang_src": "en", "lang_dst": "fr"}).status_code == 200
        assert local.get("/status").status_code == 200
        for headers in ({"X-Forwarded-For": "203.0.113.9"}, {"Forwarded": "for=203.0.113.9"},
                        {"Authorization": "Bearer wrong", "X-Real-IP": "203.0.113.9"}):
            refused = local.post("/set_lang/", json={"lang_src": "en", "lang_dst": "de"}, headers=headers)
            assert refused.status_code == 401 and "Authorization: Bearer" in refused.json()["error"]
            assert local.get("/status", headers=headers).status_code == 401
        assert local.post("/set_lang/", json={"lang_src": "en", "lang_dst": "de"},
                          headers={"Host": "localhost.evil.com"}).status_code == 400
        assert local.get("/").json()["lang_dst"] == "fr"
        relayed = local.post("/set_lang/", json={"lang_src": "en", "lang_dst": "de"},
                             headers={"X-Forwarded-For": "203.0.113.9", **AUTH})
        assert relayed.status_code == 200 and local.get("/").json()["lang_dst"] == "de"


def test_logs_never_carry_bodies_or_headers(live):
    """Request bodies (images, texts) and headers (the API token) stay out of every log of the cluster:
    the replicas', the proxy's, the controller's and the workers' files under the session folder."""
    import uuid

    select_models(live)
    body, header = f"bodycanary{uuid.uuid4().hex}", f"headercanary{uuid.uuid4().hex}"
    ids = [f"log-check-{uuid.uuid4().hex[:8]}" for _ in range(4)]
    secret = {"Authorization": f"Bearer {header}", "X-Private": header}
    lang = {"lang_src": body, "lang_dst": "es"}
    sent = [
        live.http.post("/run_tsl/", json={"text": f"Translate {body}"}, headers={**secret, "X-Request-Id": ids[0]}),
        live.http.post("/set_lang/", json=lang, headers={**secret, "X-Request-Id": ids[1]}),  # refused: 401
        live.http.post("/set_lang/", json=lang, headers={"X-Request-Id": ids[2]}),  # with the token: 400
        live.http.post("/run_tsl/", content=f'{{"text": "{body}'.encode(),  # not JSON: 400
                       headers={**secret, "Content-Type": "application/json", "X-Request-Id": ids[3]}),
    ]
    assert [response.status_code for response in sent] == [200, 401, 400, 400]
    assert body in sent[0].json()["text"]  # the body reached the server, its model and the store
    logs = live.session_dir / "logs"

    def logged() -> dict | None:  # the ingress logs one line per request: once all four are there, all is logged
        texts = {path: path.read_bytes() for path in logs.rglob("*") if path.is_file()}
        return texts if all(any(f"request {i} ".encode() in text for text in texts.values()) for i in ids) else None

    texts = wait_for(logged, 60, "the ingress logging the requests", interval_s=1)
    leaks = [str(path) for path, text in texts.items() if body.encode() in text or header.encode() in text]
    assert not leaks, leaks


@pytest.mark.parametrize("method,path,kwargs,status,words", [
    ("post", "/set_lang/", {"content": b"{not json", "headers": {"content-type": "application/json"}}, 400, "JSON"),
    ("post", "/set_lang/", {"content": b"[1]", "headers": {"content-type": "application/json"}}, 400, "object"),
    ("post", "/set_lang/", {"data": {"lang_src": "en"}}, 400, "Content-Type"),
    ("post", "/set_lang/", {"json": {"lang_src": "en"}}, 400, "lang_dst"),
    ("post", "/set_lang/", {"json": {"lang_src": "en", "lang_dst": "es", "x": 1}}, 400, "'x'"),
    ("post", "/set_lang/", {"json": {"lang_src": "xx", "lang_dst": "es"}}, 400, "language code"),
    ("post", "/set_lang/", {"json": {"lang_src": 1, "lang_dst": "es"}}, 400, "string"),
    ("post", "/set_models/", {"json": {"ocr_model_id": "nope"}}, 400, "Unknown model"),
    ("post", "/set_models/", {"json": {"ocr_model_id": ABSENT_TESSERACT}}, 400, "tesseract-ocr-tha"),
    ("post", "/run_ocrtsl/", {"json": {"contents": "@@@", "md5": None}}, 400, "base64"),
    ("post", "/run_ocrtsl/", {"json": {"contents": "aGVsbG8="}}, 400, "image"),
    ("post", "/run_ocrtsl/", {"json": {"contents": "aGVsbG8=", "md5": "0" * 32}}, 400, "does not match"),
    ("post", "/run_ocrtsl/", {"json": {"md5": "0" * 32, "force": True}}, 400, "force"),
    ("post", "/run_ocrtsl/", {"json": {"md5": "0" * 32, "force": "yes"}}, 400, "force"),
    ("post", "/run_ocrtsl/", {"json": {"md5": "0" * 32}}, 406, "send the image"),
    ("post", "/manage_plugins/", {"json": {"plugins": {"nope": True}}}, 400, "Unknown plugin"),
    ("post", "/run_ocrtsl/", {"json": {"contents": "A" * MAX_BODY_BYTES}}, 413, "larger than the limit"),
    ("post", "/run_ocrtsl/", {"json": {"contents": HUGE_IMAGE[0], "md5": HUGE_IMAGE[1]}}, 413, "pixels"),
    ("post", "/run_tsl/", {"json": {"text": "a" * 20_001}}, 400, "longer than the limit"),
    ("get", "/set_lang/", {}, 405, "GET"),
    ("post", "/", {}, 405, "POST"),
    ("get", "/nowhere", {}, 404, "/nowhere"),
    ("get", "/get_trans/", {}, 400, "text"),
])
def test_bad_requests_get_json_errors_and_store_nothing(live, method, path, kwargs, status, words):
    select_models(live)
    before, counts = live.http.get("/").json(), live.row_counts()
    response = getattr(live.http, method)(path, **kwargs)
    assert response.status_code == status, response.text
    assert words in response.json()["error"]
    assert live.http.get("/").json() == before
    assert live.row_counts() == counts


@pytest.mark.parametrize("path,body", [
    ("/set_lang/", {"lang_src": "ja", "lang_dst": "en"}),
    ("/set_models/", {"tsl_model_id": "original"}),
    ("/manage_plugins/", {"plugins": {"apertium": False}}),
    ("/set_manual_translation/", {"text": "Good night", "translation": "hijacked"}),
    ("/set_glossary_term/", {"term": "night", "translation": "hijacked"}),
    ("/delete_glossary_term/", {"term": "night"}),
])
def test_settings_need_the_api_token_and_work_calls_do_not(live, path, body):
    select_models(live)
    for text in ("Good morning", "Good night"):
        assert live.http.post("/run_tsl/", json={"text": text}).status_code == 200
    before, counts = live.http.get("/").json(), live.row_counts()
    with httpx.Client(base_url=live.url, timeout=60) as anonymous:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": API_TOKEN}):
            refused = anonymous.post(path, json=body, headers=headers)
            assert refused.status_code == 401 and "Authorization: Bearer" in refused.json()["error"]
            assert API_TOKEN not in refused.text
        assert anonymous.post("/run_tsl/", json={"text": "Good morning"}).json() == {"text": "Buenos días"}
        assert anonymous.get("/get_trans/", params={"text": "Good morning"}).json()["translations"] == [
            {"text": "Buenos días", "model": "apertium/eng-spa"}]
    assert live.http.get("/").json() == before and live.row_counts() == counts
    assert live.http.get("/get_plugin_data/").json()["apertium"]["installed"]
    if path == "/delete_glossary_term/":  # with the token: a term to delete
        live.http.post("/set_glossary_term/", json={"term": "night", "translation": "noche"})
    assert live.http.post(path, json=body).status_code == 200  # with the token
    live.http.post("/manage_plugins/", json={"plugins": {"apertium": True}})
    live.http.post("/delete_glossary_term/", json={"term": "night"})


def test_the_openapi_description_is_served(live):
    document = live.http.get("/openapi.json").json()
    assert document["openapi"].startswith("3.1")
    assert {"/", "/set_lang/", "/run_ocrtsl/", "/run_tsl_xua", "/manage_plugins/"} <= set(document["paths"])
    assert document["paths"]["/set_lang/"]["post"]["security"] == [{"apiToken": []}, {}]


def test_missing_languages_512_and_models_513(live):
    reset_selection(live)
    _, md5 = encode(render(TWO_PARAGRAPHS))
    assert ocrtsl(live, md5=md5).status_code == 512
    assert live.http.post("/run_tsl/", json={"text": "hi"}).status_code == 512
    assert live.http.get("/get_trans/", params={"text": "hi"}).status_code == 512
    assert live.http.post("/set_lang/", json={"lang_src": "en", "lang_dst": "es"}).status_code == 200
    live.store().update_selection(models=ModelSlots("", "", ""))  # set_lang selects models: none left (a plugin off)
    response = ocrtsl(live, md5=md5)
    assert response.status_code == 513 and "model" in response.json()["error"]
    assert live.http.post("/run_tsl/", json={"text": "hi"}).status_code == 513
    hello = live.http.get("/").json()
    assert hello["TSLModels"] and hello["tsl_selected"] == ""


def test_a_flood_gets_only_200s_and_503s_and_the_server_recovers(live):
    select_models(live)
    rows = live.row_counts()

    def post(i: int):
        with httpx.Client(base_url=live.url, timeout=120) as client:  # one connection per caller, as browsers do
            return client.post("/run_tsl/", json={"text": f"flood number {i} of the test"})

    with concurrent.futures.ThreadPoolExecutor(200) as pool:
        responses = list(pool.map(post, range(200)))
    statuses = [response.status_code for response in responses]
    # The test app gives a body 3 s to arrive (BODY_READ_TIMEOUT_S, for the slow-upload tests): on a loaded
    # 2-core machine the bodies of the requests in flight can take longer to reach the ingress, and are
    # then answered 408 with the deadline's message; the default deadline is 30 s.
    assert set(statuses) <= {200, 503, 408} and 200 in statuses, statuses
    late = [response for response in responses if response.status_code == 408]
    assert len(late) <= IN_FLIGHT_LIMIT and all("did not arrive within" in r.json()["error"] for r in late)
    busy = [response for response in responses if response.status_code == 503]
    assert busy, f"200 concurrent requests should exceed the limit of {IN_FLIGHT_LIMIT} in flight"
    assert busy[0].headers["Retry-After"] == "1" and "try again in a moment" in busy[0].json()["error"]
    texts_stored = live.row_counts()["texts"] - rows["texts"]
    assert texts_stored <= 2 * statuses.count(200)  # answered texts and their translations; none of the 503s
    assert live.http.post("/run_tsl/", json={"text": "after the flood"}, timeout=10).status_code == 200


def test_metrics_are_exported_and_each_request_logs_its_stage_timings(live):
    select_models(live)
    contents, md5 = encode(render([((30, 30), "Every stage is measured.")]))
    response = live.http.post("/run_ocrtsl/", json={"contents": contents, "md5": md5},
                              headers={"X-Request-Id": "metrics-check-7"})
    assert response.status_code == 200 and response.headers["X-Request-Id"] == "metrics-check-7"
    assert ocrtsl(live, md5=md5).status_code == 200
    wanted = ['ray_ocr_serve_stage_seconds_bucket{', 'stage="box"', 'stage="ocr"', 'stage="tsl"',
              'ray_ocr_serve_cache_lookups', 'result="hit"', 'ray_ocr_serve_batch_size_bucket{',
              'ray_ocr_serve_loaded_models', 'ray_ocr_serve_model_load_seconds_bucket{']
    logs = sorted((live.session_dir / "logs" / "serve").glob("replica_ocr_translate_Ingress_*.log"))
    def exported_and_logged() -> list[str] | None:
        exported = httpx.get(live.metrics_url, timeout=10).text
        lines = [line for log in logs for line in log.read_text().splitlines() if "request metrics-check-7 " in line]
        return lines if all(name in exported for name in wanted) and lines else None

    [line] = wait_for(exported_and_logged, 60, f"the metrics {wanted} exported and the request logged", interval_s=2)
    assert "POST /run_ocrtsl/ -> 200" in line
    assert all(f" {stage}=" in line for stage in ("decode", "box", "ocr", "tsl")), line


def test_status_shows_replicas_devices_loaded_models_and_why_models_are_unavailable(live):
    select_models(live)
    assert live.http.post("/run_tsl/", json={"text": "How is the server?"}).status_code == 200
    def loaded() -> dict | None:
        report = live.http.get("/status").json()
        running = report["deployments"]["Translator"].get("running", [])
        return report if running and "apertium/eng-spa" in running[0]["loaded"] else None

    report = wait_for(loaded, 30, "/status showing apertium/eng-spa loaded", interval_s=0.5)
    assert set(report["deployments"]) == {"Ingress", "BoxDetector", "OCRReader", "Translator"}
    assert report["deployments"]["Translator"]["replicas"] == {"RUNNING": 1}
    [replica] = report["deployments"]["Translator"]["running"]
    assert replica["device"] == "cpu (1 thread)" and replica["deployment"] == "Translator"
    assert replica["batching"] == {"max_batch_size": 16, "batch_wait_timeout_s": 0.02}
    assert replica["engines"]["apertium/eng-spa"] == "apertium on cpu"
    assert report["selection"]["tsl_model"] == "apertium/eng-spa"
    assert report["models"]["apertium/eng-spa"]["usable"] is True
    assert not report["models"][ABSENT_TESSERACT]["usable"]
    assert "apt-get install tesseract-ocr-tha" in report["models"][ABSENT_TESSERACT]["reason"]
    page = live.http.get("/status", headers={"Accept": "text/html,application/xhtml+xml"})
    assert page.headers["content-type"].startswith("text/html")
    assert "Model replicas" in page.text and "apertium/eng-spa" in page.text and "tesseract-ocr-tha" in page.text
    assert "up to 16, waits 0.02 s" in page.text
    assert "apertium/eng-spa (apertium on cpu)" in page.text


def test_the_default_fast_pipeline_reads_exactly_and_status_names_its_engine(live):
    select_models(live, {"box_model_id": "rapidocr/ppocr-v4-det", "ocr_model_id": "rapidocr/ppocr-v4-rec",
                         "tsl_model_id": "original"})
    contents, md5 = encode(render(TWO_PARAGRAPHS))
    response = ocrtsl(live, md5=md5, contents=contents, force=True)
    assert response.status_code == 200, response.text
    result = response.json()["result"]
    assert [block["ocr"] for block in result] == [text for _, text in TWO_PARAGRAPHS]
    engines = {model: engine for name in ("BoxDetector", "OCRReader")
               for model, engine in live.stats(name)["engines"].items()}
    assert engines["rapidocr/ppocr-v4-det"] == engines["rapidocr/ppocr-v4-rec"] == "onnxruntime float32 on cpu"
