"""A web page is never "this machine": in a real browser (Debian's Chromium), a page served on another
localhost port, as a notebook or a dev server serves one, can neither change a setting, write a glossary
term, read /status nor make the server translate through an image, against the server as `make run`
starts it (no API token; this machine's own clients change settings without one). The extension's own
requests (its popup's extension origin, its content scripts' requests without an Origin) and the
server's own page keep working."""

import asyncio
import json
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from threading import Thread

import httpx
import pytest

from core.answers import StatusAnswer
from core.settings import API_TOKEN_ENV, AppArgs
from core.slots import chosen
from deployments import status
from deployments.http_app import build_http_app
from tests.support.browser import launched
from tests.support.http_servers import serving
from tests.support.services import FakeStages, in_process_service

STATUS_CANARY = "status-canary-7d1e"

ATTACK = """<!doctype html><meta charset="utf-8"><title>a page on this machine</title>
<script>
async function attempt(name, url, init) {
  try {
    const response = await fetch(url, init);
    return [name, response.type === "opaque" ? "opaque" : String(response.status), await response.text()];
  } catch (error) {
    return [name, "blocked", String(error)];
  }
}
async function attack(api) {
  const json = {"Content-Type": "application/json"};
  const results = await Promise.all([
    attempt("set_lang", api + "/set_lang/", {method: "POST", headers: json,
            body: JSON.stringify({lang_src: "en", lang_dst: "de"})}),
    attempt("set_lang_simple", api + "/set_lang/", {method: "POST", mode: "no-cors",
            headers: {"Content-Type": "text/plain"}, body: JSON.stringify({lang_src: "en", lang_dst: "de"})}),
    attempt("glossary", api + "/set_glossary_term/", {method: "POST", headers: json,
            body: JSON.stringify({term: "house", translation: "pwned"})}),
    attempt("status", api + "/status"),
    attempt("status_no_cors", api + "/status", {mode: "no-cors"}),
  ]);
  const image = await new Promise(resolve => {
    const img = new Image();
    img.onload = () => resolve("loaded");
    img.onerror = () => resolve("error");
    img.src = api + "/run_tsl_xua?text=" + encodeURIComponent("The house is red");
  });
  return {fetches: results, image};
}
</script>"""


class _Page(BaseHTTPRequestHandler):
    def do_GET(self):
        body = ATTACK.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The ingress's HTTP app with make run's security: no API token, the default CORS and hosts."""
    import os

    saved = os.environ.pop(API_TOKEN_ENV, None)
    args = AppArgs(data_dir=tmp_path_factory.mktemp("web-pages"))
    stages = FakeStages()
    service = in_process_service(args.resolved_database_url, stages, args.limits)
    asyncio.run(service.catalogue.set_lang("en", "es"))
    asyncio.run(service.catalogue.set_models(chosen(box="easyocr/craft", ocr="tesseract/eng", tsl="apertium/eng-spa")))
    async def report(_service, _answered):  # Serve's view of the deployments needs a Serve replica
        return StatusAnswer(deployments={}, plugins={}, selection={"canary": STATUS_CANARY}, models={})

    try:
        with pytest.MonkeyPatch.context() as patch, serving(build_http_app(service, args)) as port:
            patch.setattr(status, "collect", report)
            yield f"http://127.0.0.1:{port}", service, stages
    finally:
        if saved is not None:
            os.environ[API_TOKEN_ENV] = saved


@pytest.fixture(scope="module")
def page_elsewhere():
    """A page served by another program on another port of this machine."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Page)
    Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()


@pytest.fixture(scope="module")
def browser():
    with launched() as browser:
        yield browser


def test_a_page_on_another_localhost_port_changes_and_reads_nothing(server, page_elsewhere, browser):
    api, service, stages = server
    translated_before = stages.calls["translate"]
    tab = browser.new_page()
    tab.goto(page_elsewhere)
    outcome = tab.evaluate("api => attack(api)", api)
    tab.close()
    fetches = {name: (state, text) for name, state, text in outcome["fetches"]}
    # Preflighted calls and readable GETs: the browser refuses them (no CORS for this origin) ...
    assert fetches["set_lang"][0] == fetches["glossary"][0] == fetches["status"][0] == "blocked", fetches
    # ... and what a page may send without CORS reaches the server, which refuses it: nothing readable.
    assert fetches["set_lang_simple"][0] == fetches["status_no_cors"][0] == "opaque", fetches
    assert all(STATUS_CANARY not in text for _, text in fetches.values())
    assert outcome["image"] == "error"
    selection = service.store.selection()
    assert (selection.lang_src, selection.lang_dst) == ("en", "es")
    assert service.store.glossary("en", "es").as_dict() == {}
    assert stages.calls["translate"] == translated_before  # the image computed nothing


def test_the_servers_own_page_keeps_its_rights(server, browser):
    api, service, _ = server
    tab = browser.new_page()
    tab.goto(f"{api}/ui")
    answers = tab.evaluate("""async () => {
        const json = {"Content-Type": "application/json"};
        const added = await fetch("/set_glossary_term/", {method: "POST", headers: json,
                                                         body: JSON.stringify({term: "dog", translation: "perro"})});
        const status = await fetch("/status");
        const removed = await fetch("/delete_glossary_term/", {method: "POST", headers: json,
                                                              body: JSON.stringify({term: "dog"})});
        return [added.status, status.status, removed.status, await status.text()];
    }""")
    tab.close()
    assert answers[:3] == [200, 200, 200] and STATUS_CANARY in answers[3]
    assert service.store.glossary("en", "es").as_dict() == {}


def test_a_page_elsewhere_makes_no_profile_and_the_self_service_page_makes_one(server, page_elsewhere, browser):
    """On a server listening on this machine only, /profiles/new is on: a page on another port posts a form
    (text/plain, a JSON body's look) and a no-cors fetch to it, and no profile is made; the server's own
    page makes one, and shows the address to paste into the extension."""
    from playwright.sync_api import expect

    api, service, _ = server
    tab = browser.new_page()
    tab.goto(page_elsewhere)
    fetched = tab.evaluate("""async api => (await fetch(api + "/profiles/new", {method: "POST", mode: "no-cors",
        headers: {"Content-Type": "text/plain"}, body: JSON.stringify({name: "mallory"})})).type""", api)
    assert fetched == "opaque"
    with tab.expect_navigation():
        tab.evaluate("""api => {
            const form = Object.assign(document.createElement("form"),
                                       {method: "POST", action: api + "/profiles/new", enctype: "text/plain"});
            form.append(Object.assign(document.createElement("input"),
                                      {name: '{"name": "mallory", "x": "', value: '"}'}));
            document.body.append(form);
            form.submit();
        }""", api)
    assert "error" in tab.content()
    assert "mallory" not in [profile.name for profile in service.store.profiles()]
    tab.goto(f"{api}/profiles/new")
    tab.fill("#name", "carol")
    tab.click("#make")
    expect(tab.locator("#made")).to_be_visible()
    address = tab.input_value("#address")
    tab.close()
    assert address.startswith(f"{api}/r/") and httpx.get(f"{address}/").status_code == 200
    assert "carol" in [profile.name for profile in service.store.profiles()]


def test_the_extensions_own_requests_keep_working(server):
    """Firefox's popup sends its moz-extension:// origin; the content scripts of an extension with host
    permissions (Manifest V2, as ocr_extension) use the extension's privileged fetch, which sends no
    Origin and no Referer (MDN, WebExtensions content scripts, "XHR and Fetch")."""
    api, service, stages = server
    popup = {"Origin": "moz-extension://0a1b2c3d-4e5f-6789-abcd-ef0123456789"}
    with httpx.Client(base_url=api, timeout=30) as extension:
        preflight = extension.options("/set_lang/", headers={
            **popup, "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type"})
        assert preflight.status_code == 200 and preflight.headers["access-control-allow-origin"] == popup["Origin"]
        changed = extension.post("/set_lang/", json={"lang_src": "en", "lang_dst": "es"}, headers=popup)
        assert changed.status_code == 200 and changed.headers["access-control-allow-origin"] == popup["Origin"]
        assert STATUS_CANARY in extension.get("/status", headers=popup).text
        term = extension.post("/set_glossary_term/", json={"term": "cat", "translation": "gato"}, headers=popup)
        assert term.status_code == 200 and service.store.glossary("en", "es").as_dict() == {"cat": "gato"}
        assert extension.post("/delete_glossary_term/", json={"term": "cat"}, headers=popup).status_code == 200
        content_script = extension.post("/run_tsl/", json={"text": "hello"})  # no Origin, no fetch metadata
        assert content_script.status_code == 200 and content_script.json() == {"text": "HELLO"}
        program = extension.get("/run_tsl_xua", params={"text": "hello"})  # XUnity.AutoTranslator
        assert program.status_code == 200 and program.text == "HELLO"
        refused = extension.get("/run_tsl_xua", params={"text": "hello"}, headers={"Sec-Fetch-Site": "same-site"})
        assert refused.status_code == 403 and json.loads(refused.text)["error"].startswith("run_tsl_xua answers")
