"""Reader profiles through the real Serve app and real models (issue 27's acceptance): the extension's own
calls under `/r/<key>` from another machine without the token, two readers of one image sharing the
models' work, unknown and revoked keys, and no key in Ray's logs."""

import concurrent.futures
import uuid

import httpx

from tests.support.images import char_error_rate, encode, render
from tests.support.live import AUTH, select_models
from tests.support.waiting import wait_for

ANOTHER_MACHINE = {"X-Forwarded-For": "198.51.100.23"}
"""As a relay in front of the server says of a reader elsewhere; no token is ever sent with it."""
AXIOS = {"Accept": "application/json, text/plain, */*"}
"""What the extension's HTTP library (axios) sends with every call."""
POPUP = {**AXIOS, **ANOTHER_MACHINE, "Origin": "moz-extension://0c6a1b2e-9f4d-4d1c-8a57-3e2b9c1d7f40"}
"""The popup's calls (handshake, languages, models) come from its extension page."""
CONTENT = {**AXIOS, **ANOTHER_MACHINE}
"""A Firefox content script of an extension with host permissions sends no Origin."""
SELECTION = ("lang_src", "lang_dst", "box_selected", "ocr_selected", "tsl_selected")
KEYS_USED: list[str] = []
"""Every key this module's tests made: the last test looks for them in Ray's logs."""


def selection(client: httpx.Client, **headers: str) -> dict:
    """What the handshake says is selected (the models it offers are ordered by every reader's use)."""
    hello = client.get("/", headers=headers).json()
    return {field: hello[field] for field in SELECTION}


def make_profile(live, name: str) -> str:
    """A new profile's address path (`/r/<key>`), made by the operator with the token."""
    made = live.http.post("/profiles/", json={"name": f"{name}-{uuid.uuid4().hex[:6]}"})
    assert made.status_code == 200, made.text
    path = made.json()["path"]
    KEYS_USED.append(path.removeprefix("/r/"))
    return path


def reader(live, path: str) -> httpx.Client:
    """The extension pointed at the profile's address: `${endpoint}/${target}/` for every call, no token."""
    return httpx.Client(base_url=f"{live.url}{path}", timeout=300)


def test_the_extensions_reader_flow_runs_under_a_profile_address_from_another_machine(live):
    """API.js's calls in the order a reader makes them (popup: handshake, options, plugins, languages,
    models; page: lazy miss, work, lazy hit, text translation, manual translation, other translations),
    against a server that requires the token from everyone, sending none."""
    path = make_profile(live, "reader")
    default_before = selection(live.http)
    contents, md5 = encode(render([((30, 30), "The blue train leaves at noon.")]))
    with reader(live, path) as extension:
        hello = extension.get("/", headers=POPUP)
        assert hello.status_code == 200 and "easyocr/craft" in hello.json()["BOXModels"]
        assert extension.get("/get_active_options/", headers=POPUP).status_code == 200
        assert extension.get("/get_plugin_data/", headers=POPUP).status_code == 200
        assert extension.post("/set_lang/", json={"lang_src": "en", "lang_dst": "ca"}, headers=POPUP).json() == {}
        models = {"box_model_id": "easyocr/craft", "ocr_model_id": "tesseract/eng", "tsl_model_id": "apertium/eng-cat"}
        assert extension.post("/set_models/", json=models, headers=POPUP).status_code == 200
        chosen = extension.get("/", headers=POPUP).json()
        assert (chosen["lang_src"], chosen["lang_dst"], chosen["tsl_selected"]) == ("en", "ca", "apertium/eng-cat")

        options = {}  # the popup's selectedOptions, as a new reader has them
        assert extension.post("/run_ocrtsl/", json={"md5": md5, "options": options}, headers=CONTENT).status_code == 406
        work = extension.post("/run_ocrtsl/", json={"md5": md5, "contents": contents, "options": options},
                              headers=CONTENT)
        assert work.status_code == 200, work.text
        [block] = work.json()["result"]
        assert char_error_rate(block["ocr"], "The blue train leaves at noon.") < 0.1, block["ocr"]
        assert block["tsl"] and block["tsl"] != block["ocr"]  # into Catalan
        lazy = extension.post("/run_ocrtsl/", json={"md5": md5, "options": options}, headers=CONTENT)
        assert lazy.json()["result"] == [block]
        assert extension.post("/run_tsl/", json={"text": block["ocr"]}, headers=CONTENT).json()["text"] == block["tsl"]
        own = extension.post("/set_manual_translation/", json={"text": block["ocr"], "translation": "El meu tren"},
                             headers=CONTENT)
        assert own.status_code == 200 and own.json() == {}
        listed = extension.get("/get_trans/", params={"text": block["ocr"]}, headers=CONTENT).json()["translations"]
        assert {"text": "El meu tren", "model": "manual"} in listed
        assert {"text": block["tsl"], "model": "apertium/eng-cat"} in listed

    assert selection(live.http) == default_before  # the default profile is as it was
    default_listed = live.http.get("/get_trans/", params={"text": block["ocr"]}).json()["translations"]
    assert "manual" not in [translation["model"] for translation in default_listed]
    with httpx.Client(base_url=live.url, timeout=60) as elsewhere:  # the bare paths still need the token
        refused = elsewhere.post("/set_lang/", json={"lang_src": "en", "lang_dst": "ca"}, headers=POPUP)
        assert refused.status_code == 401


def test_two_profiles_with_different_pairs_read_one_image_at_once_and_share_the_models_work(live):
    select_models(live)  # the default profile reads into Spanish
    default_before = selection(live.http)
    spanish, catalan = make_profile(live, "es"), make_profile(live, "ca")
    models = {"es": "apertium/eng-spa", "ca": "apertium/eng-cat"}
    for path, dst in ((spanish, "es"), (catalan, "ca")):
        with reader(live, path) as extension:
            assert extension.post("/set_lang/", json={"lang_src": "en", "lang_dst": dst}, headers=POPUP).json() == {}
            chosen = {"box_model_id": "easyocr/craft", "ocr_model_id": "tesseract/eng", "tsl_model_id": models[dst]}
            assert extension.post("/set_models/", json=chosen, headers=POPUP).status_code == 200
    with reader(live, spanish) as extension:
        assert extension.post("/set_glossary_term/", json={"term": "Quillmark", "translation": "Plumamarca"},
                              headers=CONTENT).json() == {}
    text = "Quillmark opens the old door.\nThe cat sleeps."
    contents, md5 = encode(render([((30, 30), text)]))
    box_before = live.stats("BoxDetector")["calls"].get("easyocr/craft", 0)
    ocr_before = live.stats("OCRReader")["calls"].get("tesseract/eng", 0)

    def read(path: str) -> list[dict]:
        with reader(live, path) as extension:
            answer = extension.post("/run_ocrtsl/", json={"md5": md5, "contents": contents}, headers=CONTENT)
            assert answer.status_code == 200, answer.text
            return answer.json()["result"]

    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        [in_spanish], [in_catalan] = pool.map(read, (spanish, catalan))
    assert live.stats("BoxDetector")["calls"]["easyocr/craft"] == box_before + 1
    assert live.stats("OCRReader")["calls"]["tesseract/eng"] == ocr_before + 1
    assert in_spanish["ocr"] == in_catalan["ocr"] and in_spanish["box"] == in_catalan["box"]
    assert in_spanish["tsl"] != in_catalan["tsl"]  # each its own pair's translation
    assert "Quillmark" in in_spanish["ocr"], in_spanish["ocr"]
    assert "Plumamarca" in in_spanish["tsl"] and "Plumamarca" not in in_catalan["tsl"], in_spanish

    with reader(live, catalan) as extension:
        assert extension.post("/set_manual_translation/", json={"text": in_catalan["ocr"], "translation": "Meva"},
                              headers=CONTENT).json() == {}
        assert extension.get("/get_glossary/", headers=CONTENT).json()["terms"] == {}
        assert extension.post("/run_ocrtsl/", json={"md5": md5}, headers=CONTENT).json()["result"][0]["tsl"] == "Meva"
    with reader(live, spanish) as extension:
        again = extension.post("/run_ocrtsl/", json={"md5": md5}, headers=CONTENT).json()["result"]
        assert again == [in_spanish]  # the other reader's manual translation is not in this one's answers
        listed = extension.get("/get_trans/", params={"text": in_spanish["ocr"]}, headers=CONTENT).json()
        assert "Meva" not in [translation["text"] for translation in listed["translations"]]
    assert selection(live.http) == default_before
    assert live.http.get("/get_glossary/").json()["terms"].get("Quillmark") is None


def test_unknown_and_revoked_keys_answer_404_and_store_nothing(live):
    path = make_profile(live, "leaving")
    name = next(p["name"] for p in live.http.get("/profiles/").json()["profiles"] if p["name"].startswith("leaving"))
    with reader(live, path) as extension:
        assert extension.post("/set_lang/", json={"lang_src": "en", "lang_dst": "es"}, headers=POPUP).status_code == 200
    assert live.http.post("/profiles/revoke/", json={"name": name}).json() == {}
    unknown = "/r/" + "A" * 32
    rows = live.row_counts()
    for gone in (path, unknown):
        with reader(live, gone) as extension:
            for call in (lambda: extension.get("/", headers=POPUP),
                         lambda: extension.post("/set_lang/", json={"lang_src": "en", "lang_dst": "ca"}, headers=POPUP),
                         lambda: extension.post("/set_manual_translation/", json={"text": "x", "translation": "y"},
                                                headers=CONTENT)):
                # a replica trusts a key it checked for service.profiles.REMEMBER_S: the revocation holds within it
                answered = wait_for(lambda call=call: (r := call()).status_code == 404 and r, 30, "a 404")
                assert "error" in answered.json() and gone.removeprefix("/r/") not in answered.text
    assert live.row_counts() == rows


def test_no_key_reaches_rays_logs(live):
    """After the requests above, and after malformed ones that end in 404/405/422 under a profile's
    address, no log file of the cluster's session holds any key."""
    path = make_profile(live, "logged")
    marker = f"profile-log-check-{uuid.uuid4().hex}"
    with reader(live, path) as extension:
        extension.get("/no_such_endpoint/", headers=CONTENT)
        extension.get("/set_lang/", headers=CONTENT)
        extension.post("/set_lang/", content=b"{not json", headers={**CONTENT, "Content-Type": "application/json"})
        extension.get("/", headers={**CONTENT, "X-Request-Id": marker})
    logs = live.session_dir / "logs"

    def written() -> bool:
        return any(marker in file.read_text(errors="replace") for file in logs.rglob("*") if file.is_file())

    wait_for(written, 60, "the last request in Ray's logs")
    leaked = sorted({(file.name, key[:6]) for file in logs.rglob("*") if file.is_file()
                     for key in KEYS_USED if key in file.read_text(errors="replace")})
    assert KEYS_USED and not leaked, leaked
    assert AUTH["Authorization"].split()[1] not in "".join(
        file.read_text(errors="replace") for file in logs.rglob("*.log"))
