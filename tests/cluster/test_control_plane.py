"""Ray's control plane of `make run`, closed to other machines and to callers without its Ray token.

The server starts as `make run` starts it (tools/serve_local.py with configs/local.yaml), on free
ports, with a data folder and a Ray folder of its own. Every listening socket of its Ray processes is
on loopback, or (each Serve replica's gRPC server, which Ray binds to [::]) refuses a caller without
the token; the GCS, the dashboard's job API and the replicas' gRPC servers refuse such a caller and
answer one with the token; `serve status` works as the launcher says; stopping the launcher stops
every process it started.
"""

import contextlib
import ipaddress
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import grpc
import httpx
import pytest

from tests.support.paths import ROOT
from tests.support.ports import free_port
from tests.support.waiting import wait_for

START_TIMEOUT_S = 300
REPLICA_GRPC = "/ray.serve.ASGIService/HandleRequest"
"""A method of the gRPC server each Serve replica runs for calls from other deployments."""
GCS_GRPC = "/ray.rpc.NodeInfoGcsService/GetClusterId"
"""A method of the GCS that any client of the cluster calls first (its request is empty)."""


@dataclass
class Server:
    process: subprocess.Popen
    url: str
    dashboard_url: str
    token_file: Path
    log: Path

    @property
    def token(self) -> str:
        return self.token_file.read_text().strip()

    def processes(self) -> dict[int, str]:
        """The running processes the launcher started, and itself (its session: it is the leader), by pid,
        with their names."""
        found = {}
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                with contextlib.suppress(OSError):
                    if os.getsid(int(entry.name)) == self.process.pid and _running(int(entry.name)):
                        found[int(entry.name)] = (entry / "comm").read_text().strip()
        return found

    def listening(self) -> list[tuple[str, ipaddress.IPv4Address | ipaddress.IPv6Address, int]]:
        """(process name, address, port) of each TCP socket the server's processes listen on."""
        sockets = _listening_sockets()
        found = []
        for pid, name in self.processes().items():
            for inode in _socket_inodes(pid):
                if inode in sockets:
                    found.append((name, *sockets[inode]))
        return found


def _running(pid: int) -> bool:
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    return False


def _listening_sockets() -> dict[int, tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, int]]:
    """Socket inode -> (address, port) of every listening TCP socket of this machine (/proc/net/tcp, tcp6).
    IPv4-mapped IPv6 addresses (::ffff:127.0.0.1) are given as the IPv4 address."""
    found = {}
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] != "0A":  # LISTEN
                continue
            host, port = fields[1].split(":")
            raw = bytes.fromhex(host)
            if sys.byteorder == "little":  # the kernel writes each 32-bit word in the machine's order
                raw = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
            address = ipaddress.ip_address(raw)
            if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
                address = address.ipv4_mapped
            found[int(fields[9])] = (address, int(port, 16))
    return found


def _socket_inodes(pid: int) -> set[int]:
    inodes = set()
    with contextlib.suppress(OSError):
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            with contextlib.suppress(OSError):
                target = os.readlink(fd)
                if target.startswith("socket:["):
                    inodes.add(int(target[len("socket:["):-1]))
    return inodes


def grpc_status(address: str, method: str, token: str | None) -> grpc.StatusCode:
    """How the gRPC server at `address` answers `method` with an empty request, sent with `token` (or none)."""
    metadata = [("authorization", f"Bearer {token}")] if token is not None else None
    with grpc.insecure_channel(address) as channel:
        try:
            channel.unary_unary(method)(b"", metadata=metadata, timeout=30)
        except grpc.RpcError as error:
            return error.code()
    return grpc.StatusCode.OK


@pytest.fixture(scope="module")
def server():
    folder = Path(tempfile.mkdtemp(prefix="ocr-cp-"))  # short: Ray's socket paths stay under 108 bytes
    http_port, dashboard_port = free_port(), free_port()
    # The tests' own RAY_AUTH_TOKEN stays in the environment: the launcher must use its file all the same.
    env = {key: value for key, value in os.environ.items() if key != "RAY_ADDRESS"}
    env["OCR_SERVE_DATA_DIR"] = str(folder / "data")
    log = folder / "serve_local.log"
    with log.open("w") as output:
        process = subprocess.Popen(
            [sys.executable, str(ROOT / "tools" / "serve_local.py"), str(ROOT / "configs" / "local.yaml"),
             "--http-port", str(http_port), "--dashboard-port", str(dashboard_port), "--temp-dir", str(folder / "ray")],
            cwd=ROOT, env=env, stdout=output, stderr=subprocess.STDOUT, start_new_session=True)
    started = Server(process, f"http://127.0.0.1:{http_port}", f"http://127.0.0.1:{dashboard_port}",
                     folder / "data" / "ray_auth_token", log)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            assert process.poll() is None, f"the launcher ended ({process.returncode}):\n{log.read_text()[-4000:]}"
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(started.url + "/", timeout=10).status_code == 200:
                    break
            assert time.monotonic() < deadline, f"no answer in {START_TIMEOUT_S} s:\n{log.read_text()[-4000:]}"
            time.sleep(1)
        yield started
    finally:
        leftover = started.processes()  # the session's, even where the launcher ended first
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        for pid in leftover:  # any that left the launcher's process group
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        process.wait(60)
        shutil.rmtree(folder, ignore_errors=True)


def test_every_listening_socket_is_on_loopback_or_refuses_callers_without_the_token(server):
    listening = server.listening()
    names = {name for name, _, _ in listening}
    assert {"gcs_server", "raylet"} <= names and any(name.startswith("ray::ServeRepli") for name in names), names
    assert ("ray::ProxyActor", ipaddress.ip_address("127.0.0.1"), int(server.url.rsplit(":", 1)[1])) in listening
    exposed = [(name, address, port) for name, address, port in listening if not address.is_loopback]
    assert all(address.is_unspecified for _, address, _ in exposed), exposed  # no one interface of the machine
    for name, _, port in exposed:
        assert grpc_status(f"127.0.0.1:{port}", REPLICA_GRPC, None) == grpc.StatusCode.UNAUTHENTICATED, (name, port)


def test_the_gcs_refuses_a_caller_without_the_token(server):
    [port] = [port for name, _, port in server.listening() if name == "gcs_server"]
    gcs = f"127.0.0.1:{port}"
    assert grpc_status(gcs, GCS_GRPC, None) == grpc.StatusCode.UNAUTHENTICATED
    assert grpc_status(gcs, GCS_GRPC, "not-the-token") == grpc.StatusCode.UNAUTHENTICATED
    assert grpc_status(gcs, GCS_GRPC, server.token) == grpc.StatusCode.OK


def test_the_dashboards_job_api_refuses_a_caller_without_the_token(server):
    jobs = f"{server.dashboard_url}/api/jobs/"
    assert httpx.get(jobs, timeout=30).status_code == 401
    assert httpx.get(jobs, headers={"Authorization": "Bearer not-the-token"}, timeout=30).status_code == 403
    answer = httpx.get(jobs, headers={"Authorization": f"Bearer {server.token}"}, timeout=30)
    assert answer.status_code == 200 and isinstance(answer.json(), list)


def _replica_grpc_ports(server: Server, at_least: int, timeout_s: float = 180) -> list[int]:
    """The ports of the replicas' gRPC servers once `at_least` of them listen (the API answers as soon
    as its ingress is up; the model replicas may still be starting)."""
    deadline = time.monotonic() + timeout_s
    while True:
        ports = [port for name, address, port in server.listening()
                 if name.startswith("ray::ServeRepli") and address.is_unspecified]
        if len(ports) >= at_least:
            return ports
        assert time.monotonic() < deadline, f"{len(ports)} replicas' gRPC servers listen, not {at_least}: {ports}"
        time.sleep(1)


def test_the_replicas_grpc_servers_on_every_interface_refuse_a_caller_without_the_token(server):
    replicas = _replica_grpc_ports(server, 4)  # one per deployment of configs/local.yaml
    for port in replicas:
        assert grpc_status(f"127.0.0.1:{port}", REPLICA_GRPC, None) == grpc.StatusCode.UNAUTHENTICATED
        assert grpc_status(f"127.0.0.1:{port}", REPLICA_GRPC, "not-the-token") == grpc.StatusCode.UNAUTHENTICATED
        # with the token the call reaches the replica (which cannot read an empty request: UNKNOWN)
        assert grpc_status(f"127.0.0.1:{port}", REPLICA_GRPC, server.token) not in (
            grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.UNAVAILABLE)


def test_serve_status_works_with_the_token_file_the_launcher_names(server, tmp_path):
    assert server.token_file.stat().st_mode & 0o777 == 0o600
    assert f"export RAY_AUTH_MODE=token RAY_AUTH_TOKEN_PATH={server.token_file}" in server.log.read_text()
    command = [str(Path(sys.executable).parent / "serve"), "status", "--address", server.dashboard_url]
    # HOME elsewhere: no ~/.ray/auth_token of the user's can stand in for the server's token
    env = {key: value for key, value in os.environ.items()
           if key not in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", "RAY_ADDRESS")}
    env["HOME"] = str(tmp_path)
    refused = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)  # the dashboard says 401
    assert refused.returncode != 0 and "Authentication required" in refused.stdout + refused.stderr, refused.stderr
    env.update({"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(server.token_file)})  # as the launcher says
    status = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert status.returncode == 0, status.stderr[-2000:]
    assert "ocr_translate:\n    status: RUNNING" in status.stdout, status.stdout


def test_stopping_the_launcher_stops_every_ray_process_it_started(server):
    """Last: SIGTERM, as a service manager stops `make run` (Ctrl-C is SIGINT, handled by `serve run`)."""
    started = server.processes()
    assert len(started) > 5, started
    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(120) == 0, server.log.read_text()[-3000:]
    wait_for(lambda: not any(_running(pid) for pid in started), 30,
             f"every Ray process of {sorted(started.values())} ending after the launcher", interval_s=0.5)
    assert "Ray stopped." in server.log.read_text()
