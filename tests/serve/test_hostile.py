"""What an anonymous client (any page the reader visits) can send, through real HTTP on the real app."""

import concurrent.futures
import json
import os
import subprocess
import sys
import time

import httpx
import pytest
from ray import serve

import graph
from core.settings import API_TOKEN_ENV
from tests.support.images import encode, render
from tests.support.live import (
    AUTH,
    BODY_READ_TIMEOUT_S,
    PER_CLIENT_LIMIT,
    held_by_this_machine,
    select_models,
    slow_upload,
)
from tests.support.ports import free_port
from tests.support.waiting import wait_for

APERTIUM = "apertium/eng-spa"


def run_tsl(live, text: str, options: dict | None = None):
    body = {"text": text, **({"options": {APERTIUM: options}} if options else {})}
    return live.http.post("/run_tsl/", json=body)


def test_a_catastrophic_backtracking_probe_is_refused_at_once_and_the_translator_keeps_serving(live):
    select_models(live)
    started = time.perf_counter()
    response = run_tsl(live, "a" * 40 + "!", {"allowed_start_end": "a]|(a*)*b|[a"})
    elapsed = time.perf_counter() - started
    assert response.status_code == 400 and "allowed_start_end" in response.json()["error"]
    assert elapsed < 1.0, elapsed  # as a regex it took 6.9 s with 26 a's, four times more per two a's
    assert run_tsl(live, "Good morning").json() == {"text": "Buenos días"}


def test_a_bad_option_in_one_of_concurrent_requests_leaves_the_others_answers_intact(live):
    select_models(live)
    bodies = [("Good morning", None)] * 6 + [("Good morning", {"allowed_start_end": "["})] + [("Thank you", None)]
    with concurrent.futures.ThreadPoolExecutor(len(bodies)) as pool:
        responses = list(pool.map(lambda body: run_tsl(live, *body), bodies))
    assert [r.status_code for r in responses] == [200] * 6 + [400, 200]
    assert {r.json()["text"] for r in responses[:6]} == {"Buenos días"}
    assert responses[7].json()["text"] == "Gracias"


def test_huge_option_strings_are_refused_before_any_work(live):
    select_models(live)
    before = live.row_counts()
    for name in ("ignore_chars", "break_chars", "allowed_start_end"):
        response = run_tsl(live, "Good morning", {name: "x" * 1_000_000})
        assert response.status_code == 400 and "longer than 256 characters" in response.json()["error"], name
    assert live.row_counts() == before


GUARDED = "ocr_translate_guarded"


@pytest.fixture(scope="module")
def guarded(live, tmp_path_factory):
    """A second app at /guarded with the default security: this machine's own clients need no token."""
    options = {name: {"ray_actor_options": {"num_cpus": 0.05}, "autoscaling_config": None, "num_replicas": 1}
               for name in ("Ingress", "BoxDetector", "OCRReader", "Translator")}
    args = {key: value for key, value in live.app_args.items() if key != "security"}
    args["data_dir"] = str(tmp_path_factory.mktemp("guarded-data"))
    serve.run(graph.app_from_config(graph.LOCAL_CONFIG, options, **args), name=GUARDED, route_prefix="/guarded")
    with httpx.Client(base_url=f"{live.url}/guarded", timeout=60) as client:  # no token
        yield client
    serve.delete(GUARDED)


SET_LANG = {"lang_src": "en", "lang_dst": "es"}


def test_this_machines_own_clients_need_no_token(guarded, live):
    assert guarded.post("/set_lang/", json=SET_LANG).status_code == 200
    port = live.url.rsplit(":", 1)[1]
    assert guarded.post("/set_lang/", json=SET_LANG, headers={"Host": f"localhost:{port}"}).status_code == 200
    assert guarded.get("/status").status_code == 200
    assert guarded.post("/set_lang/", json=SET_LANG, headers=AUTH).status_code == 200


@pytest.mark.parametrize("headers", [
    {"X-Forwarded-For": "203.0.113.9"}, {"Forwarded": "for=203.0.113.9"}, {"X-Real-IP": "203.0.113.9"},
    {"X-Forwarded-Host": "reader.example"}, {"x-forwarded-proto": "https"},
])
def test_requests_relayed_by_a_proxy_on_this_host_need_the_token(guarded, headers):
    for method, path, body in (("POST", "/set_lang/", SET_LANG), ("GET", "/status", None)):
        refused = guarded.request(method, path, json=body, headers=headers)
        assert refused.status_code == 401 and "API token" in refused.json()["error"], (path, refused.text)
        assert guarded.request(method, path, json=body, headers={**headers, **AUTH}).status_code == 200
    assert guarded.get("/", headers=headers).status_code == 200  # reading stays open


@pytest.mark.parametrize("host", ["attacker.example:4000", "localhost.evil.com", "127.0.0.1.nip.io:4000"])
def test_foreign_host_names_are_refused_against_dns_rebinding(guarded, host):
    for method, path, body in (("GET", "/", None), ("POST", "/set_lang/", SET_LANG)):
        assert guarded.request(method, path, json=body, headers={"Host": host, **AUTH}).status_code == 400


def test_a_server_reachable_from_other_machines_refuses_to_start_without_a_token(tmp_path):
    """`serve run` of a config listening on 0.0.0.0, with OCR_SERVE_API_TOKEN unset, in a cluster of its own."""
    script = f"""
import graph, ray
from ray import serve
ray.init(num_cpus=1, include_dashboard=False)
serve.start(http_options={{"host": "0.0.0.0", "port": {free_port()}}})
options = {{name: {{"ray_actor_options": {{"num_cpus": 0.1}}, "autoscaling_config": None, "num_replicas": 1}}
           for name in ("Ingress", "BoxDetector", "OCRReader", "Translator")}}
serve.run(graph.app_from_config(graph.LOCAL_CONFIG, options, data_dir={str(tmp_path)!r}))
"""
    env = {key: value for key, value in os.environ.items() if key not in (API_TOKEN_ENV, "RAY_ADDRESS")}
    done = subprocess.run([sys.executable, "-c", script], env=env, cwd=graph.LOCAL_CONFIG.parent.parent,
                          capture_output=True, text=True, timeout=240)
    assert done.returncode != 0
    assert "listens on 0.0.0.0, which other machines reach, and no API token is set" in done.stdout + done.stderr


def test_deeply_nested_json_is_a_client_error(live):
    response = live.http.post("/run_tsl/", content="[" * 200_000, headers={"Content-Type": "application/json"})
    assert response.status_code == 400 and "nested too deeply" in response.json()["error"]


def test_only_the_image_formats_the_api_promises_are_decoded(live):
    select_models(live)
    image = render([((10, 10), "Format check")], size=(300, 60))
    before = live.row_counts()
    for fmt in ("TIFF", "BMP", "PPM"):
        contents, md5 = encode(image, fmt)
        response = live.http.post("/run_ocrtsl/", json={"contents": contents, "md5": md5})
        assert response.status_code == 400 and "PNG, JPEG, GIF or WebP" in response.json()["error"], fmt
    assert live.row_counts() == before
    contents, md5 = encode(image, "WEBP")
    assert live.http.post("/run_ocrtsl/", json={"contents": contents, "md5": md5}).status_code == 200


def test_run_tsl_xua_refuses_requests_that_other_sites_pages_make(live):
    select_models(live)
    query = {"text": "Good morning"}
    refused = live.http.get("/run_tsl_xua", params=query, headers={"Sec-Fetch-Site": "cross-site"})
    assert refused.status_code == 403 and "XUnity" in refused.json()["error"]
    for site in ("none", "same-origin"):
        assert live.http.get("/run_tsl_xua", params=query, headers={"Sec-Fetch-Site": site}).text == "Buenos días"
    assert live.http.get("/run_tsl_xua", params=query).text == "Buenos días"  # programs send no such header


def test_unexpected_failures_answer_a_generic_message_with_the_request_id(caplog):
    from deployments.error_answers import error_response

    response = error_response(RuntimeError("password=hunter2 at /srv/secret/path"), "req-42")
    assert response.status_code == 500
    body = response.body.decode()
    assert "req-42" in body and "hunter2" not in body and "/srv" not in body
    assert "hunter2" in caplog.text  # the operator's log has the details


def test_an_unreachable_database_answers_503_with_retry_after_and_no_details(caplog, tmp_path):
    """What the store raises while PostgreSQL restarts (the real restart under load:
    tests/cluster/test_multinode.py): the client is told to come back, the log says why."""
    from sqlalchemy import create_engine
    from sqlalchemy.orm import sessionmaker

    from core.errors import StoreUnavailable
    from deployments.error_answers import error_response
    from service.store import Store

    store = Store(f"sqlite:///{tmp_path}/store.sqlite3")
    port = free_port()  # nothing listens on it, as on a database that is down
    store.engine = create_engine(f"postgresql+psycopg://ocr:pw1@127.0.0.1:{port}/ocr", pool_pre_ping=True)
    store._sessions = sessionmaker(store.engine)
    with pytest.raises(StoreUnavailable) as down:
        store.selection()
    response = error_response(down.value, "req-43")
    assert (response.status_code, response.headers["Retry-After"]) == (503, "5")
    assert json.loads(response.body) == {"error": "The server's database is unavailable; try again in a few seconds."}
    assert "Connection refused" in caplog.text and "req-43" in caplog.text and "pw1" not in response.body.decode()


def test_naming_an_unselected_model_per_request_needs_the_token(guarded):
    relayed = {"X-Forwarded-For": "203.0.113.9"}  # any client not of this machine
    body = {"text": "Good morning", "tsl_model_id": "original"}
    refused = guarded.post("/run_tsl/", json=body, headers=relayed)
    assert refused.status_code == 401 and "per request needs the server's API token" in refused.json()["error"]
    assert guarded.post("/run_tsl/", json=body, headers={**relayed, **AUTH}).json() == {"text": "Good morning"}
    selected = guarded.get("/").json()["tsl_selected"]
    named = guarded.post("/run_tsl/", json={"text": "Good morning", "tsl_model_id": selected}, headers=relayed)
    assert named.status_code == 200  # naming the selected model is no override
    assert guarded.post("/run_tsl/", json=body).status_code == 200  # this machine's own client


def test_one_clients_flood_of_slow_uploads_leaves_another_client_served(live):
    """Client A (127.0.0.1) opens more slow uploads than its share; client B (127.0.0.2) is still
    answered, A's extra requests get 503 at once and its slow bodies 408 after the read deadline."""
    select_models(live)
    flood = PER_CLIENT_LIMIT + 4

    with concurrent.futures.ThreadPoolExecutor(flood) as pool:
        # bodies that never finish within the deadline
        uploads = [pool.submit(slow_upload, live.url, BODY_READ_TIMEOUT_S + 3) for _ in range(flood)]
        wait_for(lambda: held_by_this_machine(live) == PER_CLIENT_LIMIT, 30, "the client's share filling",
                 interval_s=0.05)
        other = httpx.Client(base_url=live.url, timeout=30, headers=AUTH,
                             transport=httpx.HTTPTransport(local_address="127.0.0.2"))
        started = time.perf_counter()
        assert other.post("/run_tsl/", json={"text": "Good morning"}).json() == {"text": "Buenos días"}
        assert time.perf_counter() - started < BODY_READ_TIMEOUT_S  # not queued behind the flood
        statuses = sorted(future.result() for future in uploads)
    assert statuses == [408] * PER_CLIENT_LIMIT + [503] * 4


def test_texts_split_into_too_many_pieces_are_refused_before_translation(live):
    select_models(live)
    before = live.stats("Translator")["items"].get(APERTIUM, 0)
    words = " ".join(["word"] * 100)
    response = run_tsl(live, words, {"break_chars": " "})
    assert response.status_code == 413 and "pieces" in response.json()["error"]
    assert live.stats("Translator")["items"].get(APERTIUM, 0) == before
    assert run_tsl(live, " ".join(["word"] * 10), {"break_chars": " "}).status_code == 200


def test_run_tsl_xua_takes_the_pair_from_the_query(live):
    select_models(live)
    assert live.http.get("/run_tsl_xua", params={"text": "Good morning", "from": "en", "to": "es"}).text == (
        "Buenos días")
    other_pair = live.http.get("/run_tsl_xua", params={"text": "Buenos días", "from": "es", "to": "en"})
    assert other_pair.status_code == 400 and "does not support" in other_pair.json()["error"]
    unknown = live.http.get("/run_tsl_xua", params={"text": "Hi", "from": "xx", "to": "es"})
    assert unknown.status_code == 400


def test_an_option_the_reader_cleared_means_its_default_on_both_calls(live):
    select_models(live)
    contents, md5 = encode(render([((10, 10), "Cleared option")], size=(400, 60)))
    cleared = {"easyocr/craft": {"text_threshold": ""}, APERTIUM: {"break_newlines": ""}}
    assert live.http.post("/run_ocrtsl/", json={"contents": contents, "md5": md5}).status_code == 200
    lazy = live.http.post("/run_ocrtsl/", json={"md5": md5, "options": cleared})
    assert lazy.status_code == 200, lazy.text  # the default options' stored result
    assert run_tsl(live, "Good morning", {"break_newlines": ""}).json() == {"text": "Buenos días"}
