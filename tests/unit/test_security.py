"""The API token guard: who must send it, and how it is compared; the default settings over real HTTP."""

import ipaddress
import logging
import re
import socket

import httpx
import pytest
from starlette.requests import Request

from core.errors import Forbidden, Unauthorized
from core.settings import token_problem
from deployments.access import TokenGuard, asked_by_a_page, from_web_page
from tests.support.http_servers import serving
from tests.support.services import in_process_service, select_all
from tests.support.waiting import wait_for


def request_from(host: str, authorization: str | None = None, host_header: str = "127.0.0.1:4000",
                 **extra: str) -> Request:
    headers = [(b"host", host_header.encode())] + [(k.replace("_", "-").encode(), v.encode()) for k, v in extra.items()]
    if authorization:
        headers.append((b"authorization", authorization.encode()))
    return Request({"type": "http", "method": "POST", "path": "/set_lang/", "headers": headers,
                    "client": (host, 51234), "scheme": "http", "server": ("127.0.0.1", 4000), "query_string": b""})


def test_without_a_token_nothing_is_required():
    TokenGuard(None, "everyone").check(request_from("203.0.113.7"))


@pytest.mark.parametrize("host", ["127.0.0.1", "127.8.9.1", "::1"])
def test_loopback_clients_are_trusted_in_remote_mode(host):
    TokenGuard("s3cret", "remote").check(request_from(host))


@pytest.mark.parametrize("host", ["192.168.1.20", "10.0.0.3", "203.0.113.7", "fe80::1", "testclient"])
def test_other_clients_need_the_token_in_remote_mode(host):
    guard = TokenGuard("s3cret", "remote")
    with pytest.raises(Unauthorized):
        guard.check(request_from(host))
    with pytest.raises(Unauthorized):
        guard.check(request_from(host, "Bearer s3cre"))
    guard.check(request_from(host, "Bearer s3cret"))
    guard.check(request_from(host, "bearer  s3cret"))


@pytest.mark.parametrize("host_header,extra", [
    ("attacker.example:4000", {}), ("localhost.evil.com", {}), ("127.0.0.1:4000", {"x_forwarded_for": "10.1.1.1"}),
    ("localhost", {"forwarded": "for=10.1.1.1"}), ("[::1]:4000", {"x_real_ip": "10.1.1.1"}),
])
def test_loopback_peers_behind_a_proxy_or_a_foreign_name_need_the_token(host_header, extra):
    guard = TokenGuard("s3cret", "remote")
    with pytest.raises(Unauthorized):
        guard.check(request_from("127.0.0.1", host_header=host_header, **extra))
    guard.check(request_from("127.0.0.1", "Bearer s3cret", host_header=host_header, **extra))


@pytest.mark.parametrize("http_host,token,refused", [
    ("127.0.0.1", None, False), ("localhost", None, False), ("::1", None, False), ("[::1]", None, False),
    ("0.0.0.0", None, True),
    ("192.168.1.5", None, True), ("::", None, True), ("0.0.0.0", "s3cret", False),
])
def test_a_server_reachable_from_other_machines_needs_a_token(http_host, token, refused):
    assert (token_problem(http_host, token) is not None) == refused


def test_everyone_mode_asks_loopback_too():
    with pytest.raises(Unauthorized):
        TokenGuard("s3cret", "everyone").check(request_from("127.0.0.1", "Basic s3cret"))


def test_model_loads_are_rate_limited_per_replica():
    from core.errors import TooManyRequests
    from inference.worker import LoadRate

    now = [1000.0]
    rate = LoadRate(3, clock=lambda: now[0])
    for model in ("a", "b", "c"):
        rate.take(model)
    with pytest.raises(TooManyRequests, match="'d' is not loaded"):
        rate.take("d")
    now[0] += 61
    rate.take("d")  # a minute later the oldest load no longer counts


def test_a_load_is_refused_until_the_oldest_of_the_minutes_loads_is_a_minute_old():
    from core.errors import TooManyRequests
    from inference.worker import LoadRate

    now = [0.0]
    rate = LoadRate(3, clock=lambda: now[0])
    for at, model in ((0.0, "a"), (30.0, "b"), (50.0, "c")):
        now[0] = at
        rate.take(model)
    now[0] = 59.5
    with pytest.raises(TooManyRequests):
        rate.take("d")
    now[0] = 60.0
    rate.take("d")  # exactly a minute after the oldest load, which no longer counts
    now[0] = 61.0
    with pytest.raises(TooManyRequests):
        rate.take("e")  # the load at 30 s still does


# -- the default settings over real HTTP ---------------------------------------------------------------
SERVER_TOKEN = "s3cret-over-http"


def _outward_address() -> str | None:
    """This machine's address on its network (no packet is sent), or None without one."""

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))
        except OSError:
            return None
        address = probe.getsockname()[0]
    return None if ipaddress.ip_address(address).is_loopback else address


@pytest.fixture
def default_server(tmp_path, monkeypatch):
    """The ingress's HTTP app with the default security settings (`token_required_from: remote`) and
    one configured CORS origin, served by uvicorn on every address of this machine, over real HTTP."""
    from core.settings import API_TOKEN_ENV, LOOPBACK_HOST_NAMES, AppArgs, SecuritySettings
    from deployments.http_app import build_http_app
    from tests.support.services import FakeStages

    monkeypatch.setenv(API_TOKEN_ENV, SERVER_TOKEN)
    outward = _outward_address()
    defaults = SecuritySettings()
    assert defaults.token_required_from == "remote"
    args = AppArgs(data_dir=tmp_path, cors={"allow_origins": ["https://reader.example"]},
                   security={"allowed_hosts": [*defaults.allowed_hosts, *([outward] if outward else [])]})
    assert list(LOOPBACK_HOST_NAMES) == defaults.allowed_hosts
    service = in_process_service(args.resolved_database_url, FakeStages(), args.limits)
    select_all(service)
    with serving(build_http_app(service, args), host="0.0.0.0") as port:
        yield port, outward, service


def test_by_default_this_machine_changes_settings_without_the_token_and_others_need_it(default_server):
    port, outward, service = default_server
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as local:
        assert local.post("/set_lang/", json={"lang_src": "en", "lang_dst": "fr"}).status_code == 200
        assert service.store.selection().lang_dst == "fr"
        for headers in ({"X-Forwarded-For": "203.0.113.9"}, {"Forwarded": "for=203.0.113.9"},
                        {"X-Real-IP": "203.0.113.9"}, {"Host": "localhost.evil.com"}):
            refused = local.post("/set_lang/", json={"lang_src": "en", "lang_dst": "de"}, headers=headers)
            expected = 400 if "Host" in headers else 401  # a foreign host name is refused before the token
            assert refused.status_code == expected, (headers, refused.text)
            assert service.store.selection().lang_dst == "fr"
        relayed = local.post("/set_lang/", json={"lang_src": "en", "lang_dst": "de"},
                             headers={"X-Forwarded-For": "203.0.113.9", "Authorization": f"Bearer {SERVER_TOKEN}"})
        assert relayed.status_code == 200 and service.store.selection().lang_dst == "de"
    if outward is None:
        return  # no network address here: the forwarded cases above stand for remote clients
    with (httpx.Client(base_url=f"http://{outward}:{port}", timeout=30) as remote,  # a non-loopback peer
          httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as local):
        refused = remote.post("/set_lang/", json={"lang_src": "en", "lang_dst": "it"})
        assert refused.status_code == 401 and "Authorization: Bearer" in refused.json()["error"]
        assert remote.post("/set_lang/", json={"lang_src": "en", "lang_dst": "it"},
                           headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert remote.post("/set_lang/", json={"lang_src": "en", "lang_dst": "it"},  # naming this machine's host
                           headers={"Host": f"127.0.0.1:{port}"}).status_code == 401
        assert service.store.selection().lang_dst == "de"
        named = {"text": "hello", "lang_dst": "es", "tsl_model_id": "apertium/eng-spa"}  # a model per request
        assert "needs the server's API token" in remote.post("/run_tsl/", json=named).json()["error"]
        assert local.post("/run_tsl/", json=named).json() == {"text": "HELLO"}  # this machine needs none
        assert remote.post("/run_tsl/", json=named, headers={"Authorization": f"Bearer {SERVER_TOKEN}"}).json() == {
            "text": "HELLO"}
        assert remote.post("/set_lang/", json={"lang_src": "en", "lang_dst": "it"},
                           headers={"Authorization": f"Bearer {SERVER_TOKEN}"}).status_code == 200
        assert service.store.selection().lang_dst == "it"


@pytest.mark.parametrize("origin,allowed", [
    ("https://reader.example", True), ("moz-extension://1234-abcd", True), ("http://localhost:3000", False),
    ("http://127.0.0.1:8888", False),
    ("http://localhost.evil.com", False), ("http://localhost:3000.evil.com", False),
    ("https://reader.example.evil.com", False), ("http://reader.example", False), ("null", False),
])
def test_cors_allows_the_configured_origins_and_the_extensions_only(default_server, origin, allowed):
    port, _, _ = default_server
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
        preflight = client.options("/run_ocrtsl/", headers={
            "Origin": origin, "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type"})
        simple = client.get("/", headers={"Origin": origin})
    assert simple.status_code == 200
    if allowed:
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == origin
        assert simple.headers["access-control-allow-origin"] == origin
    else:
        assert preflight.status_code == 400  # the refused preflight: the browser sends nothing
        assert "access-control-allow-origin" not in preflight.headers
        assert "access-control-allow-origin" not in simple.headers


# -- web pages are never this machine ---------------------------------------------------------------------
@pytest.mark.parametrize("headers,page", [
    ({}, False),  # a program, or Firefox's content script of the extension (no Origin)
    ({"origin": "moz-extension://1234-abcd"}, False),  # the extension's popup
    ({"origin": "chrome-extension://abcdef"}, False),
    ({"origin": "http://127.0.0.1:4000"}, False),  # the server's own page, /ui
    ({"origin": "http://localhost:4000"}, True),  # another name: another origin
    ({"origin": "http://127.0.0.1:8888"}, True),  # a notebook, a dev server on this machine
    ({"origin": "http://localhost:3000"}, True),
    ({"origin": "null"}, True),  # a sandboxed frame, a file:// page
    ({"origin": "https://evil.example"}, True),
    ({"sec_fetch_site": "same-site"}, True),  # an image or a link of a page on another port
    ({"sec_fetch_site": "cross-site"}, True),
    ({"sec_fetch_site": "none"}, False),  # typed into the address bar
    ({"sec_fetch_site": "same-origin"}, False),
])
def test_a_web_page_is_never_this_machine(headers, page):
    request = request_from("127.0.0.1", **headers)
    assert from_web_page(request) == page
    guard = TokenGuard(None, "remote")  # make run's default: no token, this machine's clients free
    if page:
        with pytest.raises(Forbidden, match="Web pages may not change"):
            guard.check(request)
        with pytest.raises(Unauthorized):  # with a token set, a page needs it like any remote client
            TokenGuard("s3cret", "remote").check(request)
        TokenGuard("s3cret", "remote").check(request_from("127.0.0.1", "Bearer s3cret", **headers))
    else:
        guard.check(request)
        TokenGuard("s3cret", "remote").check(request)


@pytest.mark.parametrize("headers,page", [
    ({}, False),  # XUnity.AutoTranslator, curl
    ({"accept": "*/*"}, False),
    ({"sec_fetch_site": "none", "accept": "text/html"}, False),
    ({"sec_fetch_site": "same-origin"}, False),
    ({"sec_fetch_site": "same-site"}, True),  # <img src> on a page of another localhost port
    ({"sec_fetch_site": "cross-site"}, True),
    ({"accept": "image/avif,image/webp,*/*"}, True),  # an image, from a browser without fetch metadata
    ({"referer": "http://127.0.0.1:8888/page.html"}, True),
    ({"referer": "http://127.0.0.1:4000/ui"}, False),
    ({"origin": "http://localhost:3000"}, True),
])
def test_run_tsl_xua_answers_programs_not_pages(headers, page):
    assert asked_by_a_page(request_from("127.0.0.1", **headers)) == page


def test_a_name_others_use_with_tokenless_local_rights_is_warned_about(tmp_path, caplog):
    from core.settings import AppArgs, SecuritySettings
    from deployments.http_app import build_http_app

    assert SecuritySettings().relay_risk() is None
    assert SecuritySettings(allowed_hosts=["*"], token_required_from="everyone").relay_risk() is None
    risk = SecuritySettings(allowed_hosts=["localhost", "reader.example"]).relay_risk()
    assert "reader.example" in risk and "token_required_from: everyone" in risk and "ssh -L" in risk
    args = AppArgs(data_dir=tmp_path, security={"allowed_hosts": ["*"]})
    service = in_process_service(args.resolved_database_url, None, args.limits)
    build_http_app(service, args)
    assert "makes every client it relays 'this machine'" in caplog.text


# -- what one anonymous client may cost ---------------------------------------------------------------
def test_a_clients_new_results_are_bounded_per_hour():
    from core.errors import TooManyRequests
    from service.quota import WINDOW_S, ResultQuota

    now = [0.0]
    quota = ResultQuota(10, clock=lambda: now[0])
    quota.check("a")
    quota.charge("a", 6)
    quota.check("a")  # 6 of 10: the next request may still compute
    quota.charge("a", 6)
    with pytest.raises(TooManyRequests, match="12 new results computed in the last hour"):
        quota.check("a")
    quota.check("b")  # another client has its own share
    now[0] += WINDOW_S - 1
    with pytest.raises(TooManyRequests):
        quota.check("a")
    now[0] += 2  # an hour after the first charges, they no longer count
    quota.check("a")


def test_a_clients_share_ends_exactly_at_its_size_and_an_hour_after_each_charge():
    from core.errors import TooManyRequests
    from service.quota import WINDOW_S, ResultQuota

    now = [100.0]
    quota = ResultQuota(1, clock=lambda: now[0])
    quota.check("never-seen")  # a client the quota never saw has used nothing
    quota.charge("a", 1)  # a single new result is charged
    with pytest.raises(TooManyRequests, match="You had 1 new results"):
        quota.check("a")  # the share is used up at its size, not past it
    now[0] += WINDOW_S
    quota.check("a")  # exactly an hour later the charge no longer counts


def test_a_refused_client_is_told_in_how_many_minutes_its_oldest_charge_expires():
    from core.errors import TooManyRequests
    from service.quota import ResultQuota

    now = [0.0]
    quota = ResultQuota(91, clock=lambda: now[0])
    quota.charge("a", 90)
    now[0] = 600.0
    quota.charge("a", 1)
    for at, minutes in ((2400.0, 21), (2342.0, 21), (3000.0, 11)):
        now[0] = at  # the charge at 0 expires at 3600: 1,200 s (+1) and 1,258 s (+1) are in the 21st minute
        with pytest.raises(TooManyRequests, match=rf"You had 91 new results .* try again in {minutes} minutes\.$"):
            quota.check("a")


def test_the_quota_forgets_the_oldest_clients_past_its_bound_and_never_tracks_a_free_one(monkeypatch):
    from core.errors import TooManyRequests
    from service import quota as quota_module
    from service.quota import ResultQuota

    monkeypatch.setattr(quota_module, "MAX_TRACKED_CLIENTS", 2)
    quota = ResultQuota(1, clock=lambda: 0.0)

    def refused(client):
        try:
            quota.check(client)
        except TooManyRequests:
            return True
        return False

    quota.charge("a", 1)
    quota.charge("free", 0)  # nothing computed: no place taken among the tracked clients
    quota.charge("b", 1)
    assert refused("a") and refused("b")
    quota.charge("c", 1)  # a third client: the oldest seen is forgotten, the others kept
    assert (refused("a"), refused("b"), refused("c")) == (False, True, True)


def test_over_http_a_client_past_its_share_gets_429_and_stored_results_stay_free(tmp_path, monkeypatch):
    """Each new image costs the fake stages' 1 detection + 2 blocks read + 2 translations = 5 results."""
    from core.settings import API_TOKEN_ENV, AppArgs
    from deployments.http_app import build_http_app
    from tests.support.images import encode, render
    from tests.support.services import FakeStages

    monkeypatch.setenv(API_TOKEN_ENV, SERVER_TOKEN)
    args = AppArgs(data_dir=tmp_path, limits={"max_new_results_per_client_per_hour": 6})
    stages = FakeStages()
    service = in_process_service(args.resolved_database_url, stages, args.limits)
    select_all(service)
    relayed = {"X-Forwarded-For": "203.0.113.9"}  # a client of another machine, through a proxy here
    images = [encode(render([((10, 10), f"page {n}")])) for n in range(4)]
    with serving(build_http_app(service, args)) as port, \
            httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30, headers=relayed) as client:
        for contents, md5 in images[:2]:  # 5, then 10 results: the second starts below the share
            assert client.post("/run_ocrtsl/", json={"contents": contents, "md5": md5}).status_code == 200
        rows = service.store.integrity_problems(), stages.calls["detect"]
        refused = client.post("/run_ocrtsl/", json={"contents": images[2][0], "md5": images[2][1]})
        assert refused.status_code == 429 and refused.headers["Retry-After"]
        assert "new results computed in the last hour" in refused.json()["error"]
        assert (service.store.integrity_problems(), stages.calls["detect"]) == rows  # nothing computed
        assert not service.store.has_image(images[2][1])
        assert client.post("/run_ocrtsl/", json={"md5": images[0][1]}).status_code == 200  # stored: free
        assert client.post("/run_tsl/", json={"text": "text 40x20"}).status_code == 200  # stored translation
        assert client.post("/run_tsl/", json={"text": "something new"}).status_code == 429
        trusted = client.post("/run_ocrtsl/", json={"contents": images[3][0], "md5": images[3][1]},
                              headers={"Authorization": f"Bearer {SERVER_TOKEN}"})
        assert trusted.status_code == 200  # the operator's own clients are not counted


# -- rotating the API token, and the audit log -------------------------------------------------------------
def test_tokens_from_a_file_are_reread_when_it_changes(tmp_path, caplog):
    from core.api_tokens import CHECK_EVERY_S, ApiTokens

    now = [0.0]
    file = tmp_path / "tokens"
    file.write_text("old-token-1111\n")
    tokens = ApiTokens("from-env-2222", file, clock=lambda: now[0])
    assert tokens.matches("old-token-1111") and tokens.matches("from-env-2222") and not tokens.matches("old")
    file.write_text("# rotating\nold-token-1111\nnew-token-3333\n")
    assert not tokens.matches("new-token-3333")  # looked at most once a second
    now[0] += CHECK_EVERY_S
    assert tokens.matches("new-token-3333") and tokens.matches("old-token-1111")
    file.write_text("new-token-3333\n")
    now[0] += CHECK_EVERY_S
    assert tokens.matches("new-token-3333") and not tokens.matches("old-token-1111")
    file.unlink()
    now[0] += CHECK_EVERY_S
    assert tokens.configured and not tokens.matches("new-token-3333") and tokens.matches("from-env-2222")
    assert "2 token(s), was 1" in caplog.text and "1 token(s), was 2" in caplog.text
    assert "cannot be read" in caplog.text
    assert not any(secret in caplog.text for secret in ("old-token-1111", "new-token-3333", "from-env-2222"))
    assert not ApiTokens().configured and ApiTokens(None, tmp_path / "absent").configured  # fail closed


def test_an_unreadable_token_file_is_said_once_and_a_token_file_ignores_comments(tmp_path, caplog):
    from core.api_tokens import API_TOKEN_ENV, CHECK_EVERY_S, ApiTokens

    caplog.set_level(logging.INFO, logger="ray.serve.audit")
    now = [0.0]
    file = tmp_path / "tokens"
    file.write_text("  # an indented comment\nfirst-token-1111\n")

    def audited():
        return [record.getMessage() for record in caplog.records if record.name == "ray.serve.audit"]

    tokens = ApiTokens("from-env-2222", file, clock=lambda: now[0])
    assert tokens.matches("first-token-1111") and not tokens.matches("# an indented comment")
    assert audited() == []  # the first read is no reload
    file.unlink()
    for _ in range(3):
        now[0] += CHECK_EVERY_S
        assert not tokens.matches("first-token-1111") and tokens.matches("from-env-2222")
    assert audited() == [f"the API token file {file} cannot be read (FileNotFoundError): only {API_TOKEN_ENV} counts"]
    file.write_text("second-token-3333\n")
    now[0] += CHECK_EVERY_S
    assert tokens.matches("second-token-3333")
    assert audited()[1:] == [f"API tokens reloaded from {file}: 1 token(s), was 0"]
    caplog.clear()
    ApiTokens(None, tmp_path / "absent")
    assert audited() == [f"the API token file {tmp_path / 'absent'} cannot be read (FileNotFoundError): "
                         "only no token counts"]


def test_the_api_token_rotates_without_a_restart_and_changes_are_audited(tmp_path, monkeypatch, caplog):
    """Old and new token both valid while clients move, then the old one refused, on one running server;
    every change of a setting is one audit line naming a short client id, never a token or a reader's text."""

    from core.api_tokens import API_TOKEN_ENV, API_TOKEN_FILE_ENV
    from core.settings import AppArgs
    from deployments.http_app import build_http_app
    from tests.support.services import FakeStages

    file = tmp_path / "api-tokens"
    file.write_text("old-token-1111\n")
    monkeypatch.delenv(API_TOKEN_ENV, raising=False)
    monkeypatch.setenv(API_TOKEN_FILE_ENV, str(file))
    args = AppArgs(data_dir=tmp_path)
    service = in_process_service(args.resolved_database_url, FakeStages(), args.limits)
    relayed = {"X-Forwarded-For": "203.0.113.9"}

    def set_lang(client, token, dst):
        return client.post("/set_lang/", json={"lang_src": "en", "lang_dst": dst},
                           headers={**relayed, "Authorization": f"Bearer {token}"}).status_code

    def eventually(check):
        wait_for(check, 10, "the new token file read", interval_s=0.1)

    with serving(build_http_app(service, args)) as port, \
            httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
        assert set_lang(client, "old-token-1111", "fr") == 200
        assert set_lang(client, "new-token-3333", "de") == 401
        file.write_text("old-token-1111\nnew-token-3333\n")
        eventually(lambda: set_lang(client, "new-token-3333", "de") == 200)
        assert set_lang(client, "old-token-1111", "it") == 200  # both, while clients move
        file.write_text("new-token-3333\n")
        eventually(lambda: set_lang(client, "old-token-1111", "pt") == 401)
        assert set_lang(client, "new-token-3333", "es") == 200
        assert client.post("/set_glossary_term/", json={"term": "Zorblax", "translation": "Zorblaxo"},
                           headers={**relayed, "Authorization": "Bearer new-token-3333"}).status_code == 200
    audited = [record.getMessage() for record in caplog.records if record.name == "ray.serve.audit"]
    changes = [line for line in audited if line.startswith("languages set to")]
    assert len(changes) >= 4 and all(re.fullmatch(r"languages set to en->[a-z]{2} by [0-9a-f]{8}/token", line)
                                     for line in changes), audited
    assert any(line.startswith("glossary term ") and line.endswith("/token") for line in audited), audited
    assert "API tokens reloaded" in "\n".join(audited)
    logged = caplog.text
    assert not any(secret in logged for secret in ("old-token-1111", "new-token-3333", "Zorblax", "203.0.113.9"))
