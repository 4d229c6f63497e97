"""What an anonymous client (any page the reader visits) can send, through real HTTP on the real app."""

import concurrent.futures
import time

import pytest

from .test_http_api import select_models

pytestmark = pytest.mark.serve
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
