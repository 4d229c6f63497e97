"""Faults: replicas killed under load, a model that cannot load, a restart of the whole app, and
a process killed in the middle of writing the store. These run after every other test (see
conftest), since they replace replicas and so reset the counters other tests read."""

import concurrent.futures
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time

import httpx
import pytest
import ray
from ray import serve

from deployments.proxy_errors import INGRESS_LOST, INGRESS_LOST_RETRY_AFTER_S
from service.store import Store
from tests.support import store_writer
from tests.support.images import TWO_PARAGRAPHS, encode, render
from tests.support.live import APP_NAME, BODY_READ_TIMEOUT_S, ocrtsl, second_app, select_models, start_app
from tests.support.paths import ROOT
from tests.support.tiny_hf import BROKEN, MARIAN
from tests.support.waiting import wait_for

HANG_S = 60
"""A request without an answer after this long counts as hung."""


def replicas(deployment: str) -> list[dict]:
    """The test app's live replica actors of `deployment` (Serve names them SERVE_REPLICA::app#deployment#id)."""
    return [actor for actor in ray.util.list_named_actors(all_namespaces=True)
            if actor["name"].startswith(f"SERVE_REPLICA::{APP_NAME}#{deployment}#")]


def dead(actor) -> bool:
    """Whether Ray says `actor` died: a call to it fails so (a slow answer is not a death)."""
    try:
        ray.get(actor.__ray_ready__.remote(), timeout=10)
    except ray.exceptions.ActorDiedError:
        return True
    except (ray.exceptions.GetTimeoutError, ray.exceptions.ActorUnavailableError):
        pass
    return False


def kill_when_working(deployment: str, computing: str | None = None, deadline_s: float = 60) -> tuple[set[str], int]:
    """Kill every replica of `deployment`, as a crash would (SIGKILL), at a moment it surely holds a
    request that has no answer yet: when `computing` (by default the deployment itself) starts a
    model call, whose requests all wait for it. A count of the replica's requests asked from here
    and a ray.kill after it lost that race on a busy CI machine: every request the count had seen
    was answered before the kill took effect. Returns once Ray says each killed replica died: their
    names, and how many items the model call held."""

    def crash_at_next_model_call(replica, victims: list[int], report: str) -> None:
        """Run inside the `computing` replica (by `__ray_call__`; nested, so cloudpickle sends its code):
        at the start of its next model call, write the call's item count to `report` and SIGKILL
        `victims` (process ids; none: itself). Once."""
        import os
        import signal

        from ray import serve

        model = serve.get_replica_context().servable_object  # the Translator, OCRReader or BoxDetector
        compute = model.compute

        async def crashing(function, *args):
            model.compute = compute
            with open(report, "w") as out:
                out.write(str(len(args[-1])))  # model.compute(function, backend, items)
            for pid in victims or [os.getpid()]:
                os.kill(pid, signal.SIGKILL)
            return await compute(function, *args)

        model.compute = crashing

    def actor(replica: dict):
        return ray.get_actor(replica["name"], namespace=replica["namespace"])

    killed = {replica["name"]: actor(replica) for replica in replicas(deployment)}
    assert killed, f"{deployment} has no replica"
    [trigger] = replicas(computing or deployment)
    pids = [] if computing is None else ray.get([victim.__ray_call__.remote(lambda _: os.getpid())
                                                 for victim in killed.values()], timeout=30)
    with tempfile.TemporaryDirectory() as reports:
        report = os.path.join(reports, "held")
        ray.get(actor(trigger).__ray_call__.remote(crash_at_next_model_call, pids, report), timeout=30)
        wait_for(lambda: all(dead(victim) for victim in killed.values()), deadline_s,
                 f"{deployment} killed at a model call of {computing or deployment}")
        with open(report) as held:
            return set(killed), int(held.read())


def wait_until_answering(send, deadline_s: float = 90) -> float:
    """Seconds until `send()` answers 200."""
    started = time.monotonic()
    wait_for(lambda: send().status_code == 200, deadline_s, "the app recovering", interval_s=0.5)
    return time.monotonic() - started


PARTS = ("first", "second", "third", "fourth")
"""Sentences in each text of tsl_load: a longer text keeps the Translator busy longer per batch."""


def tsl_load(live, salt: str = ""):
    """Requests no earlier test stored an answer for (`salt` keeps each test's own)."""
    def send(i: int) -> httpx.Response:
        with httpx.Client(base_url=live.url, timeout=HANG_S) as client:
            return client.post("/run_tsl/", json={"text": " ".join(
                f"The replica number {i} was killed today {salt} in the {part} part of the test." for part in PARTS)})
    return send


def ocr_load(live, salt: str = ""):
    """Images no earlier request stored an answer for, a new one for each `i`: a stored one would be
    answered without the models."""
    def send(i: int) -> httpx.Response:
        contents, md5 = encode(render([((20, 20), f"Sign number {i} {salt}")], size=(360, 80)))
        with httpx.Client(base_url=live.url, timeout=HANG_S) as client:
            return client.post("/run_ocrtsl/", json={"contents": contents, "md5": md5})
    return send


CALLERS = 8
AFTER_DEATH = 2
"""Requests each caller of killed_under_load sends once the replicas are seen dead: they reach a
deployment that is being replaced, and must not hang either."""
AFTERWARDS = 1_000_000
"""The first request number after the load: above any the load sends, so its texts and images are new."""


def killed_under_load(send, deployment: str, computing: str | None = None) -> tuple[set[str], list[httpx.Response]]:
    """CALLERS callers each send new requests one after another; once some are answered,
    `deployment`'s replicas are killed while they hold requests (kill_when_working, which `computing`
    is passed to), and the callers go on sending until Ray says the replicas died, then AFTER_DEATH
    more each. So the load is still running when the kill comes, however slow or fast the machine:
    on a busy 2-core CI machine a fixed batch of 40 requests was all answered 200 first. The replicas
    killed, and every request's answer (none may hang)."""
    seen_dead = threading.Event()
    answers: list[httpx.Response | str] = []  # list.append is atomic: the callers share it

    def caller(first: int) -> None:
        i, after = first, 0
        while after < AFTER_DEATH:
            after += seen_dead.is_set()
            try:
                answers.append(send(i))
            except httpx.TimeoutException:
                answers.append("hung")
            i += CALLERS

    with concurrent.futures.ThreadPoolExecutor(CALLERS) as pool:
        callers = [pool.submit(caller, n) for n in range(CALLERS)]
        try:
            wait_for(lambda: len(answers) >= 4, 120, "the first answers under load", interval_s=0.05)
            killed, held = kill_when_working(deployment, computing)
        finally:
            seen_dead.set()
        for future in callers:
            future.result()
    assert killed and held
    assert "hung" not in answers
    return killed, answers


REPLACED = "A model replica stopped and is being replaced; try again in a few seconds."
"""The ingress's answer to a request whose model replica died under it (deployments/error_answers.py)."""
BUSY = "The models are busy with other requests; try again in a moment."
"""The ingress's answer when a model deployment's queue is full (max_queued_requests)."""


@pytest.mark.parametrize("deployment,load", [
    ("Translator", tsl_load), ("OCRReader", ocr_load), ("BoxDetector", ocr_load)])
def test_killing_a_replica_under_load_hangs_nothing_and_recovers(live, deployment, load):
    select_models(live)
    send = load(live, deployment)
    killed, outcomes = killed_under_load(send, deployment)
    for response in outcomes:
        assert response.status_code in (200, 503), response.text
        if response.status_code == 503:
            assert response.json()["error"] in (REPLACED, BUSY), response.text
            assert int(response.headers["Retry-After"]) >= 1  # the API: a 503 says when to retry
    # The replica held requests when it died: they are answered as replaced, not hung, not retried silently.
    assert any(response.status_code == 503 and response.json()["error"] == REPLACED for response in outcomes), [
        response.status_code for response in outcomes]
    wait_until_answering(lambda: send(AFTERWARDS))
    assert [send(AFTERWARDS + 1 + i).status_code for i in range(10)] == [200] * 10
    assert not killed & {actor["name"] for actor in replicas(deployment)}  # served by new replicas
    assert live.store().integrity_problems() == []


def test_killing_the_ingress_replica_under_load_hangs_nothing_and_recovers(live):
    """The requests the dying ingress replica held cannot be answered by it: Serve's proxy answers
    them 503 in the API's JSON with Retry-After (deployments/proxy_errors.py; without it, a plain-text
    500); the replacement ingress answers the rest (or, starting on a loaded machine, reads a body
    past the test app's short deadline: its JSON 408, seen in CI)."""
    select_models(live)
    send = tsl_load(live, "Ingress")
    # Killed as the Translator starts on texts of its requests: those surely have no answer yet.
    killed, outcomes = killed_under_load(send, "Ingress", computing="Translator")
    failed = [response for response in outcomes if response.status_code != 200]
    lost = [response for response in failed if response.status_code == 503]
    assert lost, "the ingress held requests when it died: they cannot have been answered"
    for response in lost:
        assert response.json() == {"error": INGRESS_LOST}, response.text
        assert response.headers["Retry-After"] == str(INGRESS_LOST_RETRY_AFTER_S)
    late = f"The request body did not arrive within {BODY_READ_TIMEOUT_S:g} s."
    for response in failed:
        assert response.status_code == 503 or (response.status_code == 408 and response.json()["error"] == late), (
            response.status_code, response.text)
    wait_until_answering(lambda: send(AFTERWARDS))
    assert [send(AFTERWARDS + 1 + i).status_code for i in range(10)] == [200] * 10
    assert not killed & {actor["name"] for actor in replicas("Ingress")}


QUEUE_APP, QUEUE_PREFIX = "ocr_translate_small_queue", "/small-queue"


def test_a_full_model_queue_answers_503_with_retry_after(live, tmp_path):
    """A Translator that takes one request at a time and queues one more (max_ongoing_requests 1,
    max_queued_requests 1), in an application of its own: a burst of distinct texts overfills its
    queue, and the requests past it are answered 503 with Retry-After and a JSON error at once; once
    the burst is over the queue is empty again and the next text is translated.

    Serve's router may refuse more than the queue's length (it counts a request as queued until a
    replica takes it, and says so in its code); once, on CI, it refused the whole burst (cause not
    found), so the burst itself need not contain a 200."""
    with second_app(live, QUEUE_APP, QUEUE_PREFIX, tmp_path,
                    {"Translator": {"max_ongoing_requests": 1, "max_queued_requests": 1}}) as url:
        def send(i: int) -> httpx.Response:
            with httpx.Client(base_url=url, timeout=HANG_S) as client:
                return client.post("/run_tsl/", json={"text": f"The queue number {i} is full today."})

        assert send(-1).status_code == 200  # the default selection translates: the model is loaded
        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            responses = list(pool.map(send, range(16)))
        answers = [(response.status_code, response.text) for response in responses]
        assert {status for status, _ in answers} <= {200, 503}, answers
        full = [response for response in responses if response.status_code == 503]
        assert full, "16 requests at once should overfill a queue of one"
        for response in full:
            assert response.headers["Retry-After"] == "1"
            assert response.headers["content-type"] == "application/json"
            assert response.json() == {"error": BUSY}
        assert [send(100 + i).status_code for i in range(3)] == [200] * 3  # nothing left queued or wedged


def test_a_model_that_fails_to_load_leaves_the_others_serving(live):
    assert live.http.post("/set_lang/", json={"lang_src": "ja", "lang_dst": "en"}).status_code == 200
    assert live.http.post("/set_models/", json={"tsl_model_id": MARIAN}).status_code == 200
    before = live.http.post("/run_tsl/", json={"text": "猫が好きです"}).json()
    for _ in range(2):  # and again: the failure is not cached as a loaded model
        response = live.http.post("/set_models/", json={"tsl_model_id": BROKEN})
        assert response.status_code == 400 and "failed to load" in response.json()["error"]
    assert live.http.get("/").json()["tsl_selected"] == MARIAN
    assert live.http.post("/run_tsl/", json={"text": "猫が好きです"}).json() == before
    assert live.http.post("/run_tsl/", json={"text": "これはテストです"}).status_code == 200
    select_models(live)
    assert live.http.post("/run_tsl/", json={"text": "Good morning"}).json() == {"text": "Buenos días"}


def test_a_restart_keeps_selection_cache_and_manual_translations_and_preloads_the_models(live):
    select_models(live)
    contents, md5 = encode(render(TWO_PARAGRAPHS))
    result = ocrtsl(live, md5=md5, contents=contents).json()["result"]
    own = live.http.post("/set_manual_translation/", json={"text": result[1]["ocr"], "translation": "Mi texto"})
    assert own.status_code == 200
    expected = [result[0], {**result[1], "tsl": "Mi texto"}]
    assert ocrtsl(live, md5=md5).json()["result"] == expected
    serve.delete(APP_NAME)
    start_app(live.app_args)
    wait_for(lambda: all(model in live.stats(deployment)["loaded"] for deployment, model in (
        ("BoxDetector", "easyocr/craft"), ("OCRReader", "tesseract/eng"), ("Translator", "apertium/eng-spa"))),
        120, "the selected models preloaded at start", interval_s=0.5)
    hello = live.http.get("/").json()
    assert (hello["lang_src"], hello["lang_dst"], hello["box_selected"], hello["ocr_selected"],
            hello["tsl_selected"]) == ("en", "es", "easyocr/craft", "tesseract/eng", "apertium/eng-spa")
    assert ocrtsl(live, md5=md5).json()["result"] == expected  # the lazy call: no model runs
    translations = live.http.get("/get_trans/", params={"text": result[1]["ocr"]}).json()["translations"]
    assert {"text": "Mi texto", "model": "manual"} in translations


def _stored_parts(store: Store, run: int) -> tuple[int | None, int, int]:
    """How much of `run` the writer stored: its blocks (None: no run), their OCR, their translations."""
    stored = store.find_blocks(store_writer.md5_of(run), store_writer.BOX)
    if stored is None:
        return None, 0, 0
    texts = [store_writer.text_of(run, n) for n in range(store_writer.BLOCKS)]
    return (len(stored), len(store.find_ocr([s.id for s in stored], store_writer.OCR)),
            len(store.find_translations(texts, store_writer.TSL, False)))


@pytest.mark.parametrize("run,step,statement", [(2, "blocks", 9), (2, "ocr", 7), (3, "translations", 12)])
def test_the_store_stays_consistent_after_a_kill_during_writes(database_url, run, step, statement):
    """A writer killed (SIGKILL) in the middle of its loop, inside the transaction of `step` of `run`
    after its `statement`th SQL statement: every step it committed before is all there, the one it
    was in is absent, and the operator's check finds the store consistent."""
    root = ROOT
    Store(database_url).close()  # migrated before the writer starts: what it runs are writes
    writer = subprocess.Popen([sys.executable, "-m", "tests.support.store_writer", database_url], cwd=root, text=True,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    steps = [(r, s) for r in range(run + 1) for s in store_writer.STEPS]
    committed: list[tuple[int, str]] = []
    executed = 0
    try:
        while True:
            line = writer.stdout.readline()
            assert line, writer.stderr.read()
            if line.strip() != "sql":
                committed.append((int(line.split()[0]), line.split()[1]))
                executed = 0
                assert len(committed) <= steps.index((run, step)), f"{step} of run {run} ran fewer statements"
                continue
            executed += 1
            if len(committed) == steps.index((run, step)) and executed == statement:
                break
            writer.stdin.write("\n")
            writer.stdin.flush()
    finally:
        writer.kill()  # SIGKILL, while it waits inside the open transaction
        writer.wait(timeout=60)
    assert writer.returncode == -signal.SIGKILL
    assert committed == steps[:steps.index((run, step))], "the writer should have committed the steps before"
    store = Store(database_url)
    for earlier in range(run):
        assert _stored_parts(store, earlier) == (20, 20, 20)
    done = store_writer.STEPS.index(step)
    assert _stored_parts(store, run) == (*(20,) * done, None if step == "blocks" else 0, *(0,) * (2 - done))
    assert _stored_parts(store, run + 1) == (None, 0, 0)
    assert store.integrity_problems() == []
    store.close()
    checked = subprocess.run([sys.executable, "-m", "service.store", "check", database_url], capture_output=True,
                             text=True, cwd=root, timeout=120)
    assert checked.returncode == 0 and "store is consistent" in checked.stdout, checked.stdout + checked.stderr
