"""What the server shows of reader profiles (issue 27): /status and the metrics count them and their
requests by kind of path only, and a profile's key is in none of what it shows: /status, the metrics,
the API descriptions, error answers, the logs."""

import re
import uuid

import httpx

from tests.support.waiting import wait_for

ELSEWHERE = {"Accept": "application/json", "X-Forwarded-For": "198.51.100.41"}
"""A reader on another machine, as a relay in front of the server says; no token."""


def logs_once_written(live, marker: str) -> dict[str, str]:
    """Every log file of the cluster's session by path, once the request with X-Request-Id `marker` is in one."""
    logs = live.session_dir / "logs"

    def written() -> dict[str, str] | None:
        texts = {str(file): file.read_text(errors="replace") for file in logs.rglob("*") if file.is_file()}
        return texts if any(marker in text for text in texts.values()) else None

    return wait_for(written, 60, "the last request in Ray's logs")


def test_the_status_and_metrics_count_profiles_and_no_key_reaches_them_the_api_description_or_errors(live):
    """A profile used through the API, its page and its API description: /status counts it and the requests
    under profile addresses, the metrics count requests by path kind only, and its key is nowhere."""
    made = live.http.post("/profiles/", json={"name": f"counted-{uuid.uuid4().hex[:6]}"})
    path = made.json()["path"]
    key, marker = path.removeprefix("/r/"), f"profile-count-check-{uuid.uuid4().hex}"
    before = live.http.get("/status").json()["profiles"]
    with httpx.Client(base_url=live.url + path, headers=ELSEWHERE, timeout=60) as reader:
        shown = [reader.get(where).text for where in (
            "/ui", "/ui/app.js", "/openapi.json", "/no_such_endpoint/", "/status", "/get_trans/?text=nowhere")]
        shown.append(reader.post("/set_lang/", json={"lang_src": "xx", "lang_dst": "es"}).text)
        shown.append(reader.get("/", headers={"X-Request-Id": marker}).text)
    report = live.http.get("/status").json()["profiles"]
    shown += [live.http.get("/openapi.json").text, live.http.get("/status", headers={"Accept": "text/html"}).text,
              str(report)]
    assert report["profiles"] >= 1 and report["used_last_day"] >= 1
    # counted: openapi.json, status (401), get_trans, set_lang (400) and the handshake; not /ui nor unknown paths
    assert report["requests"]["profile"] - before["requests"]["profile"] == 5
    assert report["requests"]["bare"] - before["requests"]["bare"] == 1  # the /status read in between
    assert "Reader profiles" in shown[-2] and "requests by profile paths (this replica)" in shown[-2]

    def exported() -> str | None:
        text = httpx.get(live.metrics_url, timeout=10).text
        return text if 'path_kind="profile"' in text else None

    metrics = wait_for(exported, 60, "the requests' counts exported", interval_s=2)
    assert set(re.findall(r'ray_ocr_serve_requests\w*\{[^}]*path_kind="(\w+)"', metrics)) == {"bare", "profile"}
    texts = [*shown, metrics, *logs_once_written(live, marker).values()]
    assert not [text[:80] for text in texts if key in text]
